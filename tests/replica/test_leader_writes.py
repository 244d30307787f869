"""The leader's guarded writes against a real SQLite store: fencing, the
"at most once" guard, and bounded history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from distcron.errors import CommitRejected
from distcron.replica.commit import commit, transactions
from distcron.replica.retention import prune_job_history
from distcron.scheduler.decision import Decision
from distcron.scheduler.records import LaunchRecord, LaunchState, launch_id_for
from distcron.store import Put, Store, open_store
from distcron.store.layout import (
    LEADER,
    Cursor,
    active_key,
    cursor_key,
    cursor_value,
    launch_key,
    output_key,
)

from .conftest import lead

pytestmark = pytest.mark.anyio
T0 = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)


def launching(slot: datetime, fence: int) -> LaunchRecord:
    return LaunchRecord(launch_id=launch_id_for("backup", slot), job="backup", slot=slot,
                        state=LaunchState.LAUNCHING, fence=fence, intent_at=slot)


def intent(record: LaunchRecord) -> Decision:
    return Decision(records={record.launch_id: record}, created=frozenset({record.launch_id}),
                    cursors={record.job: Cursor(record.slot or T0)})


async def test_an_intent_commits_its_record_cursor_and_live_index_together(
        store: Store) -> None:
    fence = await lead(store)
    record = launching(T0, fence)
    await commit(store, fence, intent(record), T0)
    stored = await store.get(launch_key(record.launch_id))
    assert stored is not None and LaunchRecord.from_json(stored.value) == record
    assert await store.get(active_key(record.launch_id)) is not None
    cursor = await store.get(cursor_key("backup"))
    assert cursor is not None and cursor.value == cursor_value(Cursor(T0))
    assert cursor.mod_revision == stored.mod_revision


async def test_a_deposed_leader_cannot_write_an_intent(store: Store) -> None:
    fence = await lead(store)
    await store.delete(LEADER)
    await lead(store, "r2")
    with pytest.raises(CommitRejected):
        await commit(store, fence, intent(launching(T0, fence)), T0)
    assert await store.get(launch_key(launch_id_for("backup", T0))) is None
    assert await store.get(cursor_key("backup")) is None


async def test_a_slot_already_recorded_cannot_be_recorded_again(store: Store) -> None:
    fence = await lead(store)
    await commit(store, fence, intent(launching(T0, fence)), T0)
    with pytest.raises(CommitRejected):
        await commit(store, fence, intent(launching(T0, fence)), T0)


async def test_an_ended_run_leaves_the_live_index_and_keeps_its_output(store: Store) -> None:
    fence = await lead(store)
    record = launching(T0, fence)
    await commit(store, fence, intent(record), T0)
    ended = record.model_copy(update={"state": LaunchState.SUCCEEDED, "exit_code": 0})
    await commit(store, fence, Decision(records={record.launch_id: ended},
                                        outputs={record.launch_id: b"hello\n"}), T0)
    assert await store.get(active_key(record.launch_id)) is None
    output = await store.get(output_key(record.launch_id))
    assert output is not None and output.value == b"hello\n"


async def test_history_keeps_the_newest_records_and_every_live_one(store: Store) -> None:
    fence = await lead(store)
    slots = [T0 + timedelta(minutes=n) for n in range(30)]
    for slot in slots:
        record = launching(slot, fence)
        if slot != slots[3]:  # one old run is still going
            record = record.model_copy(update={"state": LaunchState.SUCCEEDED})
        decision = intent(record)
        # Each record has the outputs of two attempts: its retry's too.
        outputs = {record.launch_id: b"out", f"{record.launch_id}~2": b"again"}
        await commit(store, fence, Decision(records=decision.records, created=decision.created,
                                            cursors=decision.cursors, outputs=outputs), T0)
    deleted = await prune_job_history(store, fence, "backup", keep=10)
    assert deleted == 20
    kept = [launch_id_for("backup", s) for s in slots[21:]] + [launch_id_for("backup", slots[3])]
    remaining, _ = await store.range("launches/")
    assert sorted(kv.key for kv in remaining) == sorted(launch_key(i) for i in kept)
    outputs, _ = await store.range("output/")
    assert sorted(kv.key for kv in outputs) == sorted(
        output_key(run_id) for i in kept for run_id in (i, f"{i}~2"))


def _catch_up(fence: int, count: int) -> Decision:
    """A job's long catch-up decided in one round: ``count`` new records."""
    records = {}
    for n in range(count):
        record = launching(T0 + timedelta(seconds=n), fence)
        records[record.launch_id] = record
    return Decision(records=records, created=frozenset(records),
                    cursors={"backup": Cursor(T0 + timedelta(seconds=count - 1))})


def test_a_decision_larger_than_a_transaction_is_cut_in_slot_order_each_part_with_its_cursor(
        ) -> None:
    decision = _catch_up(fence=3, count=40)
    batches = transactions(decision, limit=16, now=T0)
    assert len(batches) > 1
    written: list[str] = []
    for compares, ops in batches:
        assert len(ops) <= 16 and len(compares) + 1 <= 16  # the fence guard is added
        launches = [op.key for op in ops if op.key.startswith("launches/")]
        written += launches
        [cursor] = [op for op in ops if op.key == cursor_key("backup")]
        # The cursor of each part covers exactly the slots its part records.
        assert isinstance(cursor, Put) and cursor.value == cursor_value(
            Cursor(decision.records[launches[-1].removeprefix("launches/")].slot or T0))
    assert written == sorted(launch_key(i) for i in decision.records)


@pytest.mark.cluster
async def test_a_leader_commits_a_decision_larger_than_the_stores_limit_on_etcd(
        etcd_url: str) -> None:
    etcd = open_store(f"{etcd_url}?max_txn_ops=16")
    try:
        fence = await lead(etcd)
        decision = _catch_up(fence, count=40)
        await commit(etcd, fence, decision, T0)
        stored, _ = await etcd.range("launches/")
        assert len(stored) == 40
        cursor = await etcd.get(cursor_key("backup"))
        assert cursor is not None and cursor.value == cursor_value(decision.cursors["backup"])
    finally:
        await etcd.close()
