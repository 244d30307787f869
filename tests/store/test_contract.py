"""The store contract: every backend passes these, through the Store interface only.

Semantics are etcd v3's (see ``distcron.store.base``). Tests that need time to
pass use short real TTLs and wait for a condition with a deadline; none sleeps
to make itself pass.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from contextlib import aclosing
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from distcron.errors import Compacted, LeaseExpired, StoreUnavailable
from distcron.store import Compare, Delete, Event, Get, KeyValue, Put, Store, Target, WatchBatch
from tests.store.conftest import Harness
from tests.store.helpers import collect
from tests.store.model import OPS, Model
from tests.waiting import eventually

pytestmark = pytest.mark.anyio

SHORT_TTL = 0.5
LONG_TTL = 60.0


def put_event(key: str, value: bytes, create: int, mod: int, version: int, lease: int = 0) -> Event:
    return Event("put", KeyValue(key, value, create, mod, version, lease))


def delete_event(key: str, revision: int) -> Event:
    return Event("delete", KeyValue(key, b"", 0, revision, 0, 0))


# -- keys and ranges ---------------------------------------------------------------


async def test_an_absent_key_reads_as_none(store: Store) -> None:
    assert await store.get("nothing/here") is None


async def test_a_put_key_reads_back_with_its_revisions(store: Store) -> None:
    revision = await store.put("jobs/backup", b"spec")
    assert await store.get("jobs/backup") == KeyValue("jobs/backup", b"spec", revision, revision, 1)
    assert await store.revision() == revision


async def test_range_returns_the_keys_under_a_prefix_sorted_by_key(store: Store) -> None:
    for key in ["a/b", "a/é", "a/a", "a0", "b", "a/", "a/a/deep"]:
        await store.put(key, key.encode())
    found, revision = await store.range("a/")
    assert [kv.key for kv in found] == ["a/", "a/a", "a/a/deep", "a/b", "a/é"]
    assert revision == await store.revision()
    every, _ = await store.range("")
    assert [kv.key for kv in every] == ["a/", "a/a", "a/a/deep", "a/b", "a/é", "a0", "b"]


async def test_delete_removes_a_key_and_returns_how_many(store: Store) -> None:
    await store.put("k", b"v")
    assert await store.delete("k") == 1
    assert await store.get("k") is None


async def test_deleting_an_absent_key_changes_nothing(store: Store) -> None:
    await store.put("k", b"v")
    before = await store.revision()
    assert await store.delete("absent") == 0
    assert await store.delete("absent/", prefix=True) == 0
    assert await store.revision() == before


async def test_a_prefix_delete_removes_every_key_under_it_in_one_revision(store: Store) -> None:
    for key in ["p/1", "p/2", "p/3/x", "q"]:
        await store.put(key, b"")
    before = await store.revision()
    assert await store.delete("p/", prefix=True) == 3
    assert await store.revision() == before + 1
    remaining, _ = await store.range("")
    assert [kv.key for kv in remaining] == ["q"]


async def test_empty_keys_are_refused(store: Store) -> None:
    with pytest.raises(ValueError):
        await store.put("", b"v")
    with pytest.raises(ValueError):
        await store.txn([Compare.missing("")], [])


# -- revisions and versions ------------------------------------------------------


async def test_each_writing_txn_raises_the_revision_by_one(store: Store) -> None:
    start = await store.revision()
    first = await store.txn([], [Put("a", b"1"), Put("b", b"1"), Put("c", b"1")])
    assert first.revision == start + 1
    second = await store.txn([Compare.exists("a")], [Delete("a"), Put("d", b"1")])
    assert second.revision == start + 2
    assert (await store.get("d")) == KeyValue("d", b"1", start + 2, start + 2, 1)
    assert await store.revision() == start + 2


async def test_a_txn_that_writes_nothing_leaves_the_revision_alone(store: Store) -> None:
    await store.put("a", b"1")
    start = await store.revision()
    failed = await store.txn([Compare.missing("a")], [Put("a", b"2")])
    assert not failed.succeeded
    assert failed.revision == start
    read_only = await store.txn([], [Get("a"), Get("", prefix=True)])
    assert read_only.revision == start
    no_op_delete = await store.txn([], [Delete("nothing")])
    assert no_op_delete.revision == start
    assert no_op_delete.results == (0,)
    assert await store.revision() == start


async def test_versions_count_writes_and_a_recreated_key_starts_over(store: Store) -> None:
    created = await store.put("k", b"1")
    updated = await store.put("k", b"2")
    assert await store.get("k") == KeyValue("k", b"2", created, updated, 2)
    await store.delete("k")
    recreated = await store.put("k", b"3")
    assert await store.get("k") == KeyValue("k", b"3", recreated, recreated, 1)
    assert recreated == updated + 2


# -- transactions ---------------------------------------------------------------------


async def test_a_txn_runs_success_when_every_compare_holds_and_failure_otherwise(
    store: Store,
) -> None:
    rev = await store.put("a", b"1")
    await store.put("b", b"1")
    holds = await store.txn(
        [Compare.exists("a"), Compare.value_is("b", b"1")],
        [Put("c", b"yes"), Get("c"), Delete("b")],
        [Put("c", b"no")],
    )
    assert holds.succeeded
    assert holds.results == (None, (KeyValue("c", b"yes", rev + 2, rev + 2, 1),), 1)
    fails = await store.txn(
        [Compare.exists("a"), Compare.value_is("c", b"no")],
        [Put("d", b"yes")],
        [Get("c"), Delete("a"), Get("a")],
    )
    assert not fails.succeeded
    assert fails.results == ((KeyValue("c", b"yes", rev + 2, rev + 2, 1),), 1, ())
    assert await store.get("d") is None


@pytest.mark.parametrize("target", list(Target))
async def test_every_compare_op_works_on_a_present_key(store: Store, target: Target) -> None:
    lease = await store.lease_grant(LONG_TTL)
    create = await store.put("k", b"m")
    mod = await store.put("k", b"m", lease=lease)
    facts: dict[Target, int | bytes] = {
        Target.VERSION: 2,
        Target.CREATE: create,
        Target.MOD: mod,
        Target.VALUE: b"m",
        Target.LEASE: lease,
    }
    actual = facts[target]
    if isinstance(actual, bytes):
        operands: list[int | bytes] = [b"", b"l", b"m", b"mm", b"n"]
    else:
        operands = [actual - 1, actual, actual + 1]
    for op, check in OPS.items():
        for operand in operands:
            result = await store.txn([Compare("k", target, op, operand)], [Get("k")])
            assert result.succeeded == check(actual, operand), (target, op, operand)


@pytest.mark.parametrize("target", [Target.VERSION, Target.CREATE, Target.MOD, Target.LEASE])
async def test_integer_targets_of_an_absent_key_are_zero(store: Store, target: Target) -> None:
    for op, check in OPS.items():
        for operand in (0, 1):
            result = await store.txn([Compare("absent", target, op, operand)], [])
            assert result.succeeded == check(0, operand), (op, operand)


async def test_a_value_compare_on_an_absent_key_is_always_false(store: Store) -> None:
    for op in OPS:
        for operand in (b"", b"x"):
            result = await store.txn([Compare("absent", Target.VALUE, op, operand)], [])
            assert not result.succeeded, (op, operand)


async def test_a_compare_with_an_operand_of_the_wrong_type_is_refused(store: Store) -> None:
    with pytest.raises(ValueError):
        await store.txn([Compare("k", Target.VALUE, "==", 1)], [])
    with pytest.raises(ValueError):
        await store.txn([Compare("k", Target.VERSION, "==", b"1")], [])


async def test_a_get_in_a_txn_sees_the_writes_before_it(store: Store) -> None:
    before = await store.revision()
    result = await store.txn([], [Get("k"), Put("k", b"v"), Get("k")])
    assert result.results == ((), None, (KeyValue("k", b"v", before + 1, before + 1, 1),))


async def test_a_txn_may_not_write_one_key_twice(store: Store) -> None:
    before = await store.revision()
    with pytest.raises(ValueError):
        await store.txn([], [Put("k", b"1"), Put("k", b"2")])
    with pytest.raises(ValueError):
        await store.txn([], [Put("p/k", b"1"), Delete("p/", prefix=True)])
    with pytest.raises(ValueError):
        await store.txn([], [], [Delete("k"), Put("k", b"1")])
    assert await store.revision() == before
    assert await store.get("k") is None


async def test_exactly_one_of_many_concurrent_creators_wins(backend: Harness) -> None:
    clients = [backend.connect() for _ in range(3)]
    attempts = [
        clients[i % len(clients)].txn(
            [Compare.missing("election/leader")],
            [Put("election/leader", str(i).encode())],
            [Get("election/leader")],
        )
        for i in range(30)
    ]
    results = await asyncio.gather(*attempts)
    winners = [i for i, result in enumerate(results) if result.succeeded]
    assert len(winners) == 1
    leader = await clients[0].get("election/leader")
    assert leader is not None
    assert (leader.value, leader.version) == (str(winners[0]).encode(), 1)
    for result in results:
        if not result.succeeded:
            assert result.results == ((leader,),)


async def test_compare_and_set_increments_lose_no_update(backend: Harness) -> None:
    clients = [backend.connect() for _ in range(2)]
    await clients[0].put("counter", b"0")

    async def increment(client: Store, times: int) -> None:
        done = 0
        while done < times:
            current = await client.get("counter")
            assert current is not None
            nxt = str(int(current.value) + 1).encode()
            result = await client.txn(
                [Compare.modified_at("counter", current.mod_revision)], [Put("counter", nxt)]
            )
            done += result.succeeded

    await asyncio.gather(*(increment(clients[i % 2], 10) for i in range(4)))
    final = await clients[1].get("counter")
    assert final is not None
    assert (final.value, final.version) == (b"40", 41)


async def test_a_txn_over_several_keys_is_seen_whole_or_not_at_all(store: Store) -> None:
    await store.put("acct/a", b"10")
    start = await store.revision() + 1
    refused = await store.txn(
        [Compare.value_is("acct/a", b"10"), Compare.exists("acct/b")],
        [Put("acct/a", b"5"), Put("acct/b", b"5")],
    )
    assert not refused.succeeded
    assert await store.get("acct/b") is None
    moved = await store.txn(
        [Compare.value_is("acct/a", b"10"), Compare.missing("acct/b")],
        [Put("acct/a", b"5"), Put("acct/b", b"5"), Put("acct/log", b"a->b")],
    )
    async with aclosing(store.watch("acct/", start)) as watch:
        batch = await asyncio.wait_for(anext(watch), 5)
    assert [e.kv.key for e in batch.events] == ["acct/a", "acct/b", "acct/log"]
    assert {e.kv.mod_revision for e in batch.events} == {moved.revision}


# -- leases -------------------------------------------------------------------------------


async def test_lease_ids_are_distinct_and_not_zero(store: Store) -> None:
    ids = [await store.lease_grant(LONG_TTL) for _ in range(20)]
    assert len(set(ids)) == 20
    assert 0 not in ids


async def test_keepalives_keep_leased_keys_past_their_ttl(store: Store) -> None:
    ttl = 1.0
    lease = await store.lease_grant(ttl)
    await store.put("replicas/r1", b"up", lease=lease)
    start = time.monotonic()
    while time.monotonic() - start < 1.5 * ttl:
        assert await store.lease_keepalive(lease) >= ttl
        assert await store.get("replicas/r1") is not None
        await asyncio.sleep(ttl / 10)  # the keepalive cadence, not a wait for a result


async def test_an_expired_lease_deletes_its_keys_with_delete_events(store: Store) -> None:
    granted = time.monotonic()
    lease = await store.lease_grant(SHORT_TTL)
    await store.put("members/a", b"1", lease=lease)
    await store.put("members/b", b"2", lease=lease)
    last = await store.put("members/c", b"3")
    async with aclosing(store.watch("members/", last + 1)) as watch:
        events = await collect(watch, 2, timeout=SHORT_TTL + 5)
    seen = time.monotonic()
    assert seen - granted >= SHORT_TTL, "a lease must not end before its TTL"
    revision = events[0].kv.mod_revision
    assert events == [delete_event("members/a", revision), delete_event("members/b", revision)]
    assert await store.get("members/a") is None
    remaining, _ = await store.range("members/")
    assert [kv.key for kv in remaining] == ["members/c"]


async def test_a_follower_sees_a_leased_key_vanish_after_the_ttl(backend: Harness) -> None:
    leader, follower = backend.connect(), backend.connect()
    granted = time.monotonic()
    lease = await leader.lease_grant(SHORT_TTL)
    await leader.put("election/leader", b"r1", lease=lease)

    async def gone() -> bool:
        return await follower.get("election/leader") is None

    await eventually(gone, SHORT_TTL + 5, "the leased key to vanish")
    assert time.monotonic() - granted >= SHORT_TTL


async def test_keepalive_of_an_expired_lease_raises_lease_expired(store: Store) -> None:
    lease = await store.lease_grant(SHORT_TTL)
    await store.put("k", b"v", lease=lease)

    async def gone() -> bool:
        return await store.get("k") is None

    await eventually(gone, SHORT_TTL + 5, "the lease to expire")
    with pytest.raises(LeaseExpired) as raised:
        await store.lease_keepalive(lease)
    assert raised.value.lease_id == lease


async def test_keepalive_of_an_unknown_lease_raises_lease_expired(store: Store) -> None:
    with pytest.raises(LeaseExpired):
        await store.lease_keepalive(0x5EED)


async def test_a_revoked_lease_deletes_its_keys_at_once(store: Store) -> None:
    lease = await store.lease_grant(LONG_TTL)
    await store.put("workers/w1", b"", lease=lease)
    await store.put("workers/w2", b"", lease=lease)
    last = await store.put("workers/w3", b"")
    await store.lease_revoke(lease)
    assert await store.revision() == last + 1
    remaining, _ = await store.range("workers/")
    assert [kv.key for kv in remaining] == ["workers/w3"]
    async with aclosing(store.watch("workers/", last + 1)) as watch:
        events = await collect(watch, 2)
    assert events == [delete_event("workers/w1", last + 1), delete_event("workers/w2", last + 1)]
    with pytest.raises(LeaseExpired):
        await store.lease_keepalive(lease)


async def test_revoking_a_lease_that_is_gone_is_a_no_op(store: Store) -> None:
    lease = await store.lease_grant(LONG_TTL)
    await store.lease_revoke(lease)
    before = await store.revision()
    await store.lease_revoke(lease)
    await store.lease_revoke(0x5EED)
    assert await store.revision() == before


async def test_a_put_with_a_lease_that_is_gone_raises_and_writes_nothing(store: Store) -> None:
    lease = await store.lease_grant(LONG_TTL)
    await store.lease_revoke(lease)
    before = await store.revision()
    with pytest.raises(LeaseExpired):
        await store.txn([], [Put("a", b"1"), Put("b", b"1", lease=lease)])
    assert await store.get("a") is None
    assert await store.revision() == before


async def test_a_key_put_again_without_its_lease_outlives_the_lease(store: Store) -> None:
    lease = await store.lease_grant(LONG_TTL)
    await store.put("k", b"1", lease=lease)
    await store.put("k", b"2")
    await store.lease_revoke(lease)
    kv = await store.get("k")
    assert kv is not None
    assert (kv.value, kv.lease, kv.version) == (b"2", 0, 2)


# -- watches ---------------------------------------------------------------------------


async def test_a_watch_from_a_past_revision_replays_history_exactly(store: Store) -> None:
    start = await store.revision() + 1
    r1 = await store.put("w/a", b"1")
    r2 = await store.put("w/a", b"2")
    lease = await store.lease_grant(LONG_TTL)
    r3 = await store.put("w/b", b"3", lease=lease)
    r4 = (await store.txn([], [Put("w/c", b"4"), Delete("w/a")])).revision
    await store.put("elsewhere", b"x")
    assert await store.delete("w/", prefix=True) == 2
    r6 = await store.revision()
    async with aclosing(store.watch("w/", start)) as watch:
        events = await collect(watch, 7)
    assert events == [
        put_event("w/a", b"1", r1, r1, 1),
        put_event("w/a", b"2", r1, r2, 2),
        put_event("w/b", b"3", r3, r3, 1, lease),
        put_event("w/c", b"4", r4, r4, 1),
        delete_event("w/a", r4),
        delete_event("w/b", r6),
        delete_event("w/c", r6),
    ]


async def test_a_watch_delivers_live_events_in_order(store: Store) -> None:
    start = await store.revision() + 1
    async with aclosing(store.watch("live/", start)) as watch:
        collecting = asyncio.create_task(collect(watch, 20))
        for i in range(20):
            await store.put(f"live/{i % 3}", str(i).encode())
        events = await collecting
    assert [e.kv.value for e in events] == [str(i).encode() for i in range(20)]
    assert [e.kv.mod_revision for e in events] == list(range(start, start + 20))


async def test_a_watch_sees_only_its_prefix(store: Store) -> None:
    start = await store.revision() + 1
    for key in ["jobs", "jobsx/1", "jobs/a", "job/b", "jobs/b/c", "other"]:
        await store.put(key, b"")
    async with aclosing(store.watch("jobs/", start)) as watch:
        events = await collect(watch, 2)
        assert [e.kv.key for e in events] == ["jobs/a", "jobs/b/c"]
        await store.put("unrelated", b"")
        await store.put("jobs/z", b"")
        (last,) = await collect(watch, 1)
    assert last.kv.key == "jobs/z"


async def test_a_watch_sees_changes_made_by_another_client(backend: Harness) -> None:
    writer, reader = backend.connect(), backend.connect()
    start = await reader.revision() + 1
    async with aclosing(reader.watch("x/", start)) as watch:
        collecting = asyncio.create_task(collect(watch, 3))
        await writer.put("x/1", b"a")
        await writer.txn([], [Put("x/2", b"b"), Delete("x/1")])
        events = await collecting
    assert [(e.type, e.kv.key) for e in events] == [
        ("put", "x/1"),
        ("put", "x/2"),
        ("delete", "x/1"),
    ]


async def test_reading_then_watching_from_the_next_revision_misses_nothing(
    store: Store,
) -> None:
    await store.put("s/1", b"")
    found, revision = await store.range("s/")
    await store.put("s/2", b"")
    async with aclosing(store.watch("s/", revision + 1)) as watch:
        (event,) = await collect(watch, 1)
    assert [kv.key for kv in found] == ["s/1"]
    assert event.kv.key == "s/2"


async def test_a_watch_from_a_compacted_revision_raises_compacted(
    backend: Harness, store: Store
) -> None:
    for i in range(5):
        await store.put("c/k", str(i).encode())
    revision = await store.revision()
    await backend.compact(store, revision - 2)
    with pytest.raises(Compacted) as raised:
        async with aclosing(store.watch("c/", revision - 3)) as watch:
            await anext(watch)
    assert (raised.value.requested, raised.value.oldest) == (revision - 3, revision - 1)
    async with aclosing(store.watch("c/", revision - 1)) as watch:
        events = await collect(watch, 2)
    assert [e.kv.value for e in events] == [b"3", b"4"]


async def test_a_closed_watch_stops(store: Store) -> None:
    start = await store.revision() + 1
    await store.put("k", b"")
    watch = store.watch("", start)
    assert isinstance(await anext(watch), WatchBatch)
    await watch.aclose()
    with pytest.raises(StopAsyncIteration):
        await anext(watch)


async def test_closing_the_store_ends_its_watches(backend: Harness) -> None:
    client = backend.connect()
    seen: list[WatchBatch] = []
    start = await client.revision() + 1

    async def follow() -> None:
        async for batch in client.watch("", start):
            seen.append(batch)

    following = asyncio.create_task(follow())
    await client.put("k", b"")

    async def delivered() -> bool:
        return bool(seen)

    await eventually(delivered, 5, "the first batch")
    await client.close()
    await asyncio.wait_for(following, 5)
    with pytest.raises(StoreUnavailable):
        await client.get("k")


# -- against a model of etcd ------------------------------------------------------------

KEYS = ["a", "a/x", "a/y", "b"]
PREFIXES = ["", "a", "a/", "b"]
VALUES = st.sampled_from([b"", b"0", b"1"])
# An op as drawn: lease references are indexes into the example's granted leases
# (0: none) and revision operands are offsets back from the current revision,
# so that draws hit real values whatever the store's absolute revisions are.
PUT = st.tuples(st.just("put"), st.sampled_from(KEYS), VALUES, st.integers(0, 2))
GET_OR_DELETE = st.one_of(
    st.tuples(st.sampled_from(["get", "delete"]), st.sampled_from(KEYS), st.just(False)),
    st.tuples(st.sampled_from(["get", "delete"]), st.sampled_from(PREFIXES), st.just(True)),
)
OP = st.one_of(PUT, PUT, GET_OR_DELETE)
COMPARE = st.tuples(
    st.sampled_from(KEYS), st.sampled_from(list(Target)), st.sampled_from(list(OPS)),
    st.integers(-1, 3), VALUES,
)
STEP = st.one_of(
    st.tuples(
        st.just("txn"),
        st.lists(COMPARE, max_size=2),
        st.lists(OP, max_size=3),
        st.lists(OP, max_size=2),
    ),
    st.tuples(st.just("grant")),
    st.tuples(st.just("revoke"), st.integers(1, 2)),
)
_examples = itertools.count()


@settings(
    max_examples=200,
    deadline=None,
    # Each example works under its own key prefix, so sharing the store is safe.
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(steps=st.lists(STEP, max_size=12))
async def test_the_store_agrees_with_a_model_of_etcd(
    store: Store, steps: list[tuple[Any, ...]]
) -> None:
    prefix = f"model{next(_examples)}/"
    model = Model(await store.revision())
    start = model.revision + 1
    leases: list[int] = []

    def lease(ref: int) -> int:
        return leases[ref - 1] if 0 < ref <= len(leases) else 0

    def operand(target: Target, offset: int, value: bytes) -> int | bytes:
        if target is Target.VALUE:
            return value
        if target is Target.VERSION:
            return offset
        if target is Target.LEASE:
            return lease(offset)
        return model.revision - offset

    def op(drawn: tuple[Any, ...]) -> Put | Get | Delete:
        if drawn[0] == "put":
            return Put(prefix + drawn[1], drawn[2], lease(drawn[3]))
        kind = Get if drawn[0] == "get" else Delete
        return kind(prefix + drawn[1], drawn[2])

    try:
        for step in steps:
            if step[0] == "grant":
                leases.append(await store.lease_grant(LONG_TTL))
                model.grant(leases[-1])
            elif step[0] == "revoke":
                await store.lease_revoke(lease(step[1]))
                model.revoke(lease(step[1]))
            else:
                compare = [Compare(prefix + k, t, o, operand(t, n, v)) for k, t, o, n, v in step[1]]
                success, failure = [op(d) for d in step[2]], [op(d) for d in step[3]]
                try:
                    expected = model.txn(compare, success, failure)
                except (ValueError, LeaseExpired) as refused:
                    with pytest.raises(type(refused)):
                        await store.txn(compare, success, failure)
                else:
                    assert await store.txn(compare, success, failure) == expected
            found, revision = await store.range(prefix)
            assert (found, revision) == ([model.kvs[k] for k in sorted(model.kvs)], model.revision)

        if model.events:
            async with aclosing(store.watch(prefix, start)) as watch:
                assert await collect(watch, len(model.events)) == model.events
    finally:
        # Examples share the store: leave no lease to expire in a later one.
        for granted in leases:
            await store.lease_revoke(granted)
