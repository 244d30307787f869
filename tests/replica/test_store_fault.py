"""A replica whose SQLite file is removed under it: it stops leading at once,
campaigns no more, says why, and stops when told."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from distcron.clock import SystemClock
from distcron.metrics import Metrics
from distcron.replica.runtime import Replica, ReplicaConfig
from distcron.store.sqlite import SqliteStore
from tests.waiting import eventually

pytestmark = pytest.mark.anyio


async def test_a_leader_whose_file_is_removed_stops_leading_and_says_why(
        tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = SqliteStore(path, poll_interval=0.02)
    replica = Replica(store, {}, ReplicaConfig("r1", "127.0.0.1:1", lease_ttl=1.0),
                      SystemClock(), Metrics(CollectorRegistry()))
    stop = asyncio.Event()
    running = asyncio.create_task(replica.run(stop))
    try:
        await eventually(lambda: replica.is_leader, 10, "r1 to lead")
        assert replica.store_problem is None
        for name in ("state.db", "state.db-wal", "state.db-shm"):
            (tmp_path / name).unlink()
        await eventually(lambda: not replica.is_leader, 1, "r1 to stop leading")
        assert replica.store_problem is not None and "removed" in replica.store_problem
        # A fresh file at the path is not taken up: r1 stays out until restarted.
        other = SqliteStore(path)
        await other.close()
        assert not running.done() and not replica.is_leader
        stop.set()
        await asyncio.wait_for(running, 10)
    finally:
        stop.set()
        await store.close()
