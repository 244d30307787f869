"""A real API server on a real SQLite store, for every test in this directory."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry

from distcron.metrics import Metrics
from distcron.scheduler.records import LaunchRecord
from distcron.store import Store, open_store
from distcron.store.layout import launch_key, output_key
from tests.served_api import ServedApi, StaticReplica

TOKEN = "test-token-5f2c"
NOW = datetime(2026, 11, 24, 5, 30, tzinfo=UTC)


class FixedClock:
    """Wall time stands still at ``at``; the API only reads ``now``."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at

    def monotonic(self) -> float:
        return 0.0

    async def sleep(self, seconds: float) -> None:
        raise AssertionError("the API never sleeps")


@pytest.fixture
def make_api(tmp_path: Path) -> Iterator[Callable[..., ServedApi]]:
    """Start a server: ``make_api(token=..., wrap=...)``, ``wrap`` wrapping the store."""
    started: list[ServedApi] = []

    def start(token: str | None = TOKEN,
              wrap: Callable[[Store], Store] = lambda store: store) -> ServedApi:
        registry = CollectorRegistry()
        Metrics(registry).identify("r1")
        served = ServedApi(
            lambda: wrap(open_store(f"sqlite:///{tmp_path / 'state.db'}")),
            StaticReplica("r1", "127.0.0.1:8500", is_leader=True, leader_changes=3),
            token, registry, clock=FixedClock(NOW),
        )
        served.start()
        started.append(served)
        return served

    yield start
    for served in started:
        served.stop()


@pytest.fixture
def api(make_api: Callable[..., ServedApi]) -> ServedApi:
    return make_api()


@pytest.fixture
def client(api: ServedApi) -> Iterator[httpx.Client]:
    """A client that sends the right token."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=api.url, headers=headers, timeout=10) as http:
        yield http


@pytest.fixture
def seed(api: ServedApi) -> Callable[..., None]:
    """Write launch records (and a run's output) straight into the store, as the leader would."""

    def write(*records: LaunchRecord, output: bytes | None = None) -> None:
        for record in records:
            api.call(api.store.put(launch_key(record.launch_id), record.to_json()))
            if output is not None:
                api.call(api.store.put(output_key(record.launch_id), output))

    return write
