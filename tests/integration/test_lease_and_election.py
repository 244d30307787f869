"""A replica's lease and campaign on a real etcd when the store answers late
(issue 13.1): a lease grant answered after its TTL never leaves the replica
holding a key it cannot use, and a leader key under its own lease never keeps
it out."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from distcron.clock import SystemClock
from distcron.errors import LeaseExpired
from distcron.replica.membership import Membership
from distcron.store import Compare, Put, Store, open_store
from distcron.store.layout import LEADER, replica_key
from tests.interposing_store import InterposingStore

pytestmark = [pytest.mark.anyio, pytest.mark.cluster]

TTL = 2.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class LateGrants(InterposingStore):
    """The real store, whose next lease grant reaches etcd ``delayed`` seconds
    after it was sent (as in a paused member's socket, or sent again to the
    next endpoint after a timeout), and is answered ``late`` seconds after
    etcd granted it."""

    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
        self.delayed = 0.0
        self.late = 0.0

    async def lease_grant(self, ttl: float) -> int:
        delayed, late, self.delayed, self.late = self.delayed, self.late, 0.0, 0.0
        # The fault (the store's slowness), not a wait for the test to pass.
        await asyncio.sleep(delayed)
        lease = await self.inner.lease_grant(ttl)
        await asyncio.sleep(late)
        return lease


@pytest.fixture
async def store(etcd_url: str) -> AsyncIterator[LateGrants]:
    opened = LateGrants(open_store(etcd_url))
    yield opened
    await opened.close()


class StallingClock(SystemClock):
    """The real clock, on which a test can make the process seem to have
    stalled (paused, or its loop blocked) for ``stalled`` seconds."""

    stalled = 0.0

    def monotonic(self) -> float:
        return super().monotonic() + self.stalled


def member(store: Store, name: str = "r1") -> Membership:
    return Membership(store, name, {"listen": "127.0.0.1:1"}, TTL, StallingClock())


@pytest.mark.parametrize(("delayed", "late"), [(TTL + 0.5, 0.0), (0.0, TTL * 0.75)],
                         ids=["granted-after-its-ttl", "answered-late"])
async def test_a_grant_that_took_longer_than_its_ttl_is_made_certain_before_it_is_used(
        store: LateGrants, delayed: float, late: float) -> None:
    store.delayed, store.late = delayed, late
    joined = member(store)
    await joined.join()
    try:
        assert joined.lease_valid(TTL / 2), "joined with a lease it cannot count on"
        registered = await store.get(replica_key("r1"))
        assert registered is not None and registered.lease == joined.lease
        fence = await joined.campaign()
        assert fence is not None and joined.lease_valid()
        leader = await store.get(LEADER)
        assert leader is not None and leader.lease == joined.lease
    finally:
        await joined.leave()


async def test_a_grant_answered_after_its_lease_expired_registers_nothing(
        store: LateGrants) -> None:
    # etcd's lease lives its TTL rounded up to whole seconds; this is later still.
    store.late = TTL + 2.0
    joined = member(store)
    with pytest.raises(LeaseExpired):
        await joined.join()
    await joined.leave()
    assert await store.get(replica_key("r1")) is None
    assert not joined.lease_valid()
    await joined.join()  # and the next join is a clean one
    try:
        assert await joined.campaign() is not None
    finally:
        await joined.leave()


async def test_a_leader_key_under_its_own_lease_does_not_keep_a_replica_out(
        store: LateGrants) -> None:
    joined = member(store)
    await joined.join()
    try:
        # As a term that ended while the lease lived, its resignation lost, leaves it.
        body = json.dumps({"id": "r1"}).encode()
        stale = await store.txn([Compare.missing(LEADER)], [Put(LEADER, body, joined.lease)])
        assert stale.succeeded
        fence = await asyncio.wait_for(joined.campaign(), TTL)
        assert fence is not None and fence > stale.revision
        leader = await store.get(LEADER)
        assert leader is not None and leader.create_revision == fence
    finally:
        await joined.leave()


async def test_a_leader_key_under_another_replicas_lease_is_left_alone(
        store: LateGrants) -> None:
    first, second = member(store, "r1"), member(store, "r2")
    await first.join()
    await second.join()
    try:
        fence = await first.campaign()
        assert fence is not None
        assert await second.campaign() is None
        leader = await store.get(LEADER)
        assert leader is not None and leader.create_revision == fence
    finally:
        await second.leave()
        await first.leave()


async def test_a_replica_whose_lease_is_not_certain_enough_does_not_campaign(
        store: LateGrants) -> None:
    joined = member(store)
    await joined.join()
    try:
        await asyncio.wait_for(joined.renewed(), TTL)
        assert joined.may_campaign()
        # The process stalled: most of the TTL passed with no renewal.
        assert isinstance(joined.clock, StallingClock)
        joined.clock.stalled = TTL * 0.8
        assert not joined.may_campaign()
        assert await joined.campaign() is None
        assert await store.get(LEADER) is None
    finally:
        await joined.leave()


async def test_a_leader_is_deposed_only_while_its_registration_is_the_one_last_seen(
        store: LateGrants) -> None:
    leader, follower = member(store, "r1"), member(store, "r2")
    await leader.join()
    await follower.join()
    try:
        fence = await leader.campaign()
        assert fence is not None and await follower.campaign() is None
        seen = follower.leader_seen
        registration = await store.get(replica_key("r1"))
        assert seen is not None and seen.create_revision == fence and registration is not None
        # The leader republishes: what the follower saw is stale, nothing is deleted.
        await store.put(replica_key("r1"), registration.value, lease=leader.lease)
        assert not await follower.depose(seen, "r1", registration.mod_revision)
        assert (await store.get(LEADER)) is not None
        republished = await store.get(replica_key("r1"))
        assert republished is not None
        assert await follower.depose(seen, "r1", republished.mod_revision)
        assert await store.get(LEADER) is None
        assert await follower.campaign() is not None
    finally:
        await follower.leave()
        await leader.leave()
