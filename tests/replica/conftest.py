"""A fresh SQLite store per test, and becoming its leader."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from distcron.store import Compare, Put, Store, open_store
from distcron.store.layout import LEADER


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    yield opened
    await opened.close()


async def lead(store: Store, replica: str = "r1") -> int:
    """Become leader under a fresh lease; returns the fence."""
    lease = await store.lease_grant(30)
    result = await store.txn([Compare.missing(LEADER)],
                             [Put(LEADER, json.dumps({"id": replica}).encode(), lease)])
    assert result.succeeded
    return result.revision
