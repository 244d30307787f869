"""A replica joining while the leader is new does not unseat it: not having
heard a clock yet keeps a replica from campaigning, never deposes a leader."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from distcron.clock import SystemClock
from distcron.metrics import Metrics
from distcron.replica.clocks import FIRST_HEARING
from distcron.replica.runtime import Replica, ReplicaConfig
from distcron.store.layout import replica_key
from distcron.store.sqlite import SqliteStore
from tests.waiting import eventually

pytestmark = pytest.mark.anyio


async def test_a_replica_joining_a_new_leader_leaves_it_leading(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "state.db", poll_interval=0.02)
    other = SqliteStore(tmp_path / "state.db", poll_interval=0.02)
    replica = Replica(store, {}, ReplicaConfig("r1", "127.0.0.1:1", lease_ttl=2.0),
                      SystemClock(), Metrics(CollectorRegistry()))
    stop = asyncio.Event()
    running = asyncio.create_task(replica.run(stop))
    try:
        await eventually(lambda: replica.is_leader, 10, "r1 to lead")
        fence = replica.fence
        # A replica that publishes no clock (an older version) registers within
        # r1's first hearing: r1 waits to hear it, leading all the while.
        lease = await other.lease_grant(30)
        await other.put(replica_key("old"), json.dumps({"id": "old"}).encode(), lease=lease)
        await eventually(lambda: replica.clock_problem == "waiting to hear the clocks of old",
                         5, "r1 to wait for old's clock")
        await eventually(lambda: replica.clock_problem is None, FIRST_HEARING + 5,
                         "r1 to stop waiting")
        assert (replica.is_leader, replica.fence, replica.leader_changes) == (True, fence, 1)
    finally:
        stop.set()
        await asyncio.wait_for(running, 10)
        await other.close()
        await store.close()
