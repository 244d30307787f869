"""Fixtures for the store tests: one harness per backend, a fresh store per test.

Every test of ``test_contract.py`` runs once per entry of :data:`BACKENDS`. A
backend's harness opens stores on one test's own data (a fresh file for SQLite;
for etcd it will be a fresh key prefix on the session's cluster) and knows the
few things the :class:`Store` interface does not offer, like forcing a
compaction. To add a backend, write its harness and add it to ``BACKENDS``.
The etcd harness uses the session's cluster (``tests/conftest.py``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Protocol

import pytest

from distcron.store import Store
from distcron.store.etcd import EtcdStore
from distcron.store.etcd_url import parse_etcd_url
from distcron.store.sqlite import SqliteStore


class Harness(Protocol):
    """What the contract suite needs from a backend, beyond the Store interface."""

    def connect(self) -> Store:
        """Another client of this test's store; closed by the fixture."""
        ...

    async def compact(self, store: Store, revision: int) -> None:
        """Drop the store's history up to ``revision``."""
        ...

    async def close(self) -> None: ...


class SqliteHarness:
    """A fresh file per test; a short poll so that cross-client tests are quick."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._opened: list[Store] = []

    def connect(self) -> Store:
        store = SqliteStore(self.path, poll_interval=0.02)
        self._opened.append(store)
        return store

    async def compact(self, store: Store, revision: int) -> None:
        assert isinstance(store, SqliteStore)
        await store.compact(revision)

    async def close(self) -> None:
        for store in self._opened:
            await store.close()


class EtcdHarness:
    """A fresh key prefix per test on the session's cluster.

    Tests share the cluster's revision counter, so closing leaves nothing
    behind that could change it later: the leases still holding keys under
    the prefix are revoked (an expiring lease would delete them during some
    later test), then the keys are deleted.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._opened: list[EtcdStore] = []

    def connect(self, url: str | None = None, **options: float) -> EtcdStore:
        """A client of the test's prefix; ``url`` may name it differently (other
        members first, options), ``options`` go to :class:`EtcdStore`."""
        store = EtcdStore(parse_etcd_url(url or self.url), **options)
        self._opened.append(store)
        return store

    async def compact(self, store: Store, revision: int) -> None:
        assert isinstance(store, EtcdStore)
        await store.compact(revision)

    async def close(self) -> None:
        for store in self._opened:
            await store.close()
        cleaner = EtcdStore(parse_etcd_url(self.url))
        try:
            left, _ = await cleaner.range("")
            for lease in {kv.lease for kv in left if kv.lease}:
                await cleaner.lease_revoke(lease)
            await cleaner.delete("", prefix=True)
        finally:
            await cleaner.close()


BACKENDS: dict[str, Callable[[pytest.FixtureRequest, Path], Harness]] = {
    "sqlite": lambda request, tmp_path: SqliteHarness(tmp_path / "store" / "state.db"),
    "etcd": lambda request, tmp_path: EtcdHarness(request.getfixturevalue("etcd_url")),
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=[pytest.param(name, marks=pytest.mark.cluster) if name == "etcd"
                        else name for name in sorted(BACKENDS)])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    harness = BACKENDS[request.param](request, tmp_path)
    try:
        yield harness
    finally:
        await harness.close()


@pytest.fixture
async def store(backend: Harness) -> Store:
    return backend.connect()

