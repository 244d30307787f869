"""The leader's writes that stop a run on a worker agent, from its rounds'
decisions to a real SQLite store: the stop request (the assignment rewritten)
commits in the transaction that records the decision; a launch started and
stopped by one round is assigned as a stop alone; a run the same round records as
ended gets no stop that would bring its deleted assignment back."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest

from distcron.executors.base import LaunchRequest, RunState, RunStatus
from distcron.jobs import build_spec
from distcron.replica.commit import commit
from distcron.scheduler.decision import Decision
from distcron.scheduler.inputs import Input, JobChanged, Reported, Triggered, WorkersChanged
from distcron.scheduler.records import LaunchRecord, LaunchState
from distcron.scheduler.rounds import LeaderRounds
from distcron.store import KeyValue, Store
from distcron.store.layout import Cursor, assignment_key, launch_key
from distcron.worker.protocol import stop_requested, stop_value
from tests.scheduler.world import T0, Worker

from .conftest import lead

pytestmark = pytest.mark.anyio
FIRST, SECOND = "backup@2026-11-24T06:01:00Z", "backup@2026-11-24T06:02:00Z"


class Leader:
    """The leader's rounds, each decision committed to the real store."""

    def __init__(self, store: Store, fence: int) -> None:
        self.store = store
        self.fence = fence
        self.rounds = LeaderRounds(fence, "r1")

    async def round(self, now: datetime, *inputs: Input) -> Decision:
        decision = self.rounds.decide(inputs, now)
        await commit(self.store, self.fence, decision, now)
        return decision


async def _leader(store: Store, **job: object) -> Leader:
    leader = Leader(store, await lead(store))
    spec = build_spec({"name": "backup", "schedule": "* * * * *", "executor": "agent",
                       "command": "true", "concurrency": "replace", **job})
    await leader.round(T0, WorkersChanged({"w1": Worker()}), JobChanged(spec, Cursor(T0)))
    return leader


async def _assignment(store: Store, launch_id: str) -> KeyValue:
    kv = await store.get(assignment_key("w1", launch_id))
    assert kv is not None, launch_id
    return kv


async def test_a_stop_request_commits_in_the_transaction_that_records_the_stop(
        store: Store) -> None:
    leader = await _leader(store)
    await leader.round(T0 + timedelta(minutes=1))
    assert not stop_requested((await _assignment(store, FIRST)).value)

    decision = await leader.round(T0 + timedelta(minutes=2))
    assert [r.launch_id for r in decision.stop_requests] == [FIRST]
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
    leader = await _leader(store, catchup="all")
    decision = await leader.round(T0 + timedelta(minutes=2, seconds=30))
    assert [s.record.launch_id for s in decision.assignments] == [SECOND]
    assert [r.launch_id for r in decision.stop_requests] == [FIRST]
    assert (await _assignment(store, FIRST)).value == stop_value(FIRST)
    assert not stop_requested((await _assignment(store, SECOND)).value)


async def test_a_run_the_same_plan_records_as_ended_gets_no_stop(store: Store) -> None:
    leader = await _leader(store)
    await leader.round(T0 + timedelta(minutes=1))
    now = T0 + timedelta(minutes=1, seconds=10)
    # One round of the leader's loop: a manual run replaces the first, then the
    # worker's final report of the first is applied, with its clean-up.
    ended = RunStatus(FIRST, RunState.SUCCEEDED, exit_code=0)
    decision = await leader.round(now, Triggered("t1", "backup", "backup@manual-1"),
                                  Reported(FIRST, "w1", ended))
    assert not decision.stop_requests
    assert await store.get(assignment_key("w1", FIRST)) is None
    record = await store.get(launch_key(FIRST))
    assert record is not None
    assert LaunchRecord.from_json(record.value).state is LaunchState.STOPPED
    assert await store.get(assignment_key("w1", "backup@manual-1")) is not None
