"""The leader's writes that stop a run on a worker agent, from the scheduler
core's plans to a real SQLite store: the stop request (the assignment rewritten)
commits in the transaction that records the decision; a launch started and
stopped by one plan is assigned as a stop alone; a run the same plan records as
ended gets no stop that would bring its deleted assignment back."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta

import pytest

from distcron.executors.base import LaunchRequest
from distcron.replica.agents import cleanup_ops, worker_ops
from distcron.replica.commit import commit
from distcron.scheduler.core import SchedulerCore, merge
from distcron.scheduler.plan import Plan
from distcron.scheduler.records import LaunchRecord, LaunchState
from distcron.store import KeyValue, Op, Store
from distcron.store.layout import Cursor, assignment_key, launch_key
from distcron.worker.protocol import stop_requested, stop_value
from tests.scheduler.world import T0, Job

from .conftest import lead

pytestmark = pytest.mark.anyio
FIRST, SECOND = "backup@2026-11-24T06:01:00Z", "backup@2026-11-24T06:02:00Z"


@dataclass(frozen=True)
class Worker:
    id: str = "w1"
    slots: int = 4
    tags: tuple[str, ...] = ()
    load: float = 0.0


def _request(record: LaunchRecord) -> LaunchRequest:
    assert record.run_id is not None
    return LaunchRequest(launch_id=record.run_id, job=record.job, slot=record.slot, fence=1,
                         command="true")


async def _leader(store: Store, job: Job) -> tuple[SchedulerCore, int]:
    fence = await lead(store)
    core = SchedulerCore(fence, "r1")
    core.set_workers({"w1": Worker()}, T0)
    core.set_job(job, Cursor(T0), T0)
    return core, fence


async def _commit(store: Store, fence: int, plan: Plan,
                  extra: dict[str, list[Op]] | None = None) -> None:
    """As LeaderTerm._commit does: the workers' writes beside the records."""
    extra = extra if extra is not None else {}
    worker_ops(plan, extra, _request)
    await commit(store, fence, plan, extra)


async def _assignment(store: Store, launch_id: str) -> KeyValue:
    kv = await store.get(assignment_key("w1", launch_id))
    assert kv is not None, launch_id
    return kv


async def test_a_stop_request_commits_in_the_transaction_that_records_the_stop(
        store: Store) -> None:
    core, fence = await _leader(store, Job(executor="agent", concurrency="replace"))
    await _commit(store, fence, core.tick(T0 + timedelta(minutes=1)))
    assert not stop_requested((await _assignment(store, FIRST)).value)

    plan = core.tick(T0 + timedelta(minutes=2))
    assert [r.launch_id for r in plan.stops] == [FIRST]
    await _commit(store, fence, plan)
    stop = await _assignment(store, FIRST)
    assert stop.value == stop_value(FIRST)
    record = await store.get(launch_key(FIRST))
    assert record is not None and record.mod_revision == stop.mod_revision
    assert LaunchRecord.from_json(record.value).reason == f"stopping: replaced by {SECOND}"
    replacing = await _assignment(store, SECOND)
    assert LaunchRequest.from_dict(json.loads(replacing.value)).launch_id == SECOND


async def test_a_launch_started_and_stopped_by_one_plan_is_assigned_as_a_stop_alone(
        store: Store) -> None:
    # Catch-up "all" decides two slots at once: the second replaces the first
    # before any worker could have seen it.
    core, fence = await _leader(store, Job(executor="agent", concurrency="replace",
                                           catchup="all"))
    plan = core.tick(T0 + timedelta(minutes=2, seconds=30))
    assert [r.launch_id for r in plan.starts] == [FIRST, SECOND]
    assert [r.launch_id for r in plan.stops] == [FIRST]
    await _commit(store, fence, plan)
    assert (await _assignment(store, FIRST)).value == stop_value(FIRST)
    assert not stop_requested((await _assignment(store, SECOND)).value)


async def test_a_run_the_same_plan_records_as_ended_gets_no_stop(store: Store) -> None:
    core, fence = await _leader(store, Job(executor="agent", concurrency="replace"))
    await _commit(store, fence, core.tick(T0 + timedelta(minutes=1)))
    now = T0 + timedelta(minutes=1, seconds=10)
    # One round of the leader's loop: a manual run replaces the first, then the
    # worker's final report of the first is applied, with its clean-up.
    stopping = core.trigger("backup", "backup@manual-1", now)
    assert [r.launch_id for r in stopping.stops] == [FIRST]
    ended = core.run_ended(FIRST, LaunchState.SUCCEEDED, now, exit_code=0)
    plan = merge([stopping, ended])
    await _commit(store, fence, plan, {FIRST: cleanup_ops(FIRST, "w1")})
    assert await store.get(assignment_key("w1", FIRST)) is None
    record = await store.get(launch_key(FIRST))
    assert record is not None
    assert LaunchRecord.from_json(record.value).state is LaunchState.STOPPED
    assert await store.get(assignment_key("w1", "backup@manual-1")) is not None
