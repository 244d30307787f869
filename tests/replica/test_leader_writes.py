"""The leader's guarded writes against a real SQLite store: fencing, the
"at most once" guard, and bounded history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from distcron.errors import CommitRejected
from distcron.replica.commit import commit
from distcron.replica.retention import prune_job_history
from distcron.scheduler.plan import Plan
from distcron.scheduler.records import LaunchRecord, LaunchState, launch_id_for
from distcron.store import Put, Store
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


def intent(record: LaunchRecord) -> Plan:
    plan = Plan()
    plan.write(record, create=True)
    plan.cursors[record.job] = Cursor(record.slot or T0)
    return plan


async def test_an_intent_commits_its_record_cursor_and_live_index_together(
        store: Store) -> None:
    fence = await lead(store)
    record = launching(T0, fence)
    await commit(store, fence, intent(record))
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
        await commit(store, fence, intent(launching(T0, fence)))
    assert await store.get(launch_key(launch_id_for("backup", T0))) is None
    assert await store.get(cursor_key("backup")) is None


async def test_a_slot_already_recorded_cannot_be_recorded_again(store: Store) -> None:
    fence = await lead(store)
    await commit(store, fence, intent(launching(T0, fence)))
    with pytest.raises(CommitRejected):
        await commit(store, fence, intent(launching(T0, fence)))


async def test_an_ended_run_leaves_the_live_index_and_keeps_its_output(store: Store) -> None:
    fence = await lead(store)
    record = launching(T0, fence)
    await commit(store, fence, intent(record))
    ended = Plan()
    ended.write(record.model_copy(update={"state": LaunchState.SUCCEEDED, "exit_code": 0}))
    await commit(store, fence, ended,
                 {record.launch_id: [Put(output_key(record.launch_id), b"hello\n")]})
    assert await store.get(active_key(record.launch_id)) is None
    output = await store.get(output_key(record.launch_id))
    assert output is not None and output.value == b"hello\n"


async def test_history_keeps_the_newest_records_and_every_live_one(store: Store) -> None:
    fence = await lead(store)
    slots = [T0 + timedelta(minutes=n) for n in range(30)]
    for slot in slots:
        record = launching(slot, fence)
        plan = intent(record)
        if slot != slots[3]:  # one old run is still going
            plan.write(record.model_copy(update={"state": LaunchState.SUCCEEDED}))
        await commit(store, fence, plan,
                     {record.launch_id: [Put(output_key(record.launch_id), b"out")]})
    deleted = await prune_job_history(store, fence, "backup", keep=10)
    assert deleted == 20
    kept = [launch_id_for("backup", s) for s in slots[21:]] + [launch_id_for("backup", slots[3])]
    remaining, _ = await store.range("launches/")
    assert sorted(kv.key for kv in remaining) == sorted(launch_key(i) for i in kept)
    outputs, _ = await store.range("output/")
    assert len(outputs) == len(kept)
