"""A launch its batch scheduler (Slurm) holds pending: recorded ``queued`` with
cause ``waiting_for_resources`` and the scheduler's reason, and launched all the
same: its end is recorded, overlap policies count it, takeover asks its executor
about it, and pausing or removing its job stops it through the executor."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distcron.executors.base import RunState, RunStatus
from distcron.jobs import JobSpec, build_spec
from distcron.scheduler.core import SchedulerCore
from distcron.scheduler.inputs import JobChanged, JobRemoved, RunEnded, RunPending, Settled
from distcron.scheduler.records import Cause, LaunchRecord, LaunchState
from distcron.scheduler.rounds import LeaderRounds
from distcron.store.layout import Cursor
from tests.scheduler.world import T0, Job, World, minutes, seconds

FIRST = "backup@2026-11-24T06:01:00Z"
SECOND = "backup@2026-11-24T06:02:00Z"
REASON = "pending in Slurm: Resources"


def leader(world: World, job: Job) -> SchedulerCore:
    core = SchedulerCore(world.fence, "r1", "here")
    world.commit(core.set_job(job, Cursor(T0), T0))
    return core


def pending_first(world: World, job: Job, reason: str = REASON) -> SchedulerCore:
    """The job's first slot launched, and held pending by its executor."""
    core = leader(world, job)
    assert [r.launch_id for r in world.commit(core.tick(T0 + minutes(1))).starts] == [FIRST]
    world.commit(core.run_pending(FIRST, reason))
    return core


def test_a_pending_launch_is_queued_with_the_schedulers_reason_and_stays_launched() -> None:
    world = World()
    pending_first(world, Job())
    record = world.records[FIRST]
    assert record.state is LaunchState.QUEUED
    assert (record.cause, record.reason) == (Cause.WAITING_FOR_RESOURCES, REASON)
    assert record.waiting_for_resources and record.launched and record.submitted
    assert record.active and not record.waiting
    assert record.run_id == FIRST and record.executor == "local"


def test_the_same_reason_again_writes_nothing_and_a_new_one_is_written() -> None:
    world = World()
    core = pending_first(world, Job())
    assert not core.run_pending(FIRST, REASON).records
    plan = world.commit(core.run_pending(FIRST, "pending in Slurm: Priority"))
    assert plan.records[FIRST].reason == "pending in Slurm: Priority"
    assert plan.records[FIRST].state is LaunchState.QUEUED


def test_a_pending_launch_that_starts_is_running_without_the_waiting_reason() -> None:
    world = World()
    core = pending_first(world, Job())
    world.commit(core.run_started(FIRST, T0 + minutes(3), pid=7))
    record = world.records[FIRST]
    assert record.state is LaunchState.RUNNING and record.started_at == T0 + minutes(3)
    assert (record.cause, record.reason) == (None, "")


@settings(max_examples=60, deadline=None)
@given(reasons=st.lists(st.sampled_from(["Resources", "Priority", "BeginTime"]), min_size=1,
                        max_size=4),
       outcome=st.sampled_from([LaunchState.SUCCEEDED, LaunchState.FAILED,
                                LaunchState.TIMED_OUT, LaunchState.STOPPED,
                                LaunchState.MISSED, LaunchState.UNKNOWN, LaunchState.LOST]),
       started=st.booleans())
def test_the_end_of_a_launch_queued_for_resources_is_recorded(
        reasons: list[str], outcome: LaunchState, started: bool) -> None:
    world = World()
    core = leader(world, Job())
    world.commit(core.tick(T0 + minutes(1)))
    for reason in reasons:
        world.commit(core.run_pending(FIRST, f"pending in Slurm: {reason}"))
    if started:
        world.commit(core.run_started(FIRST, T0 + minutes(1.5)))
    world.commit(core.run_ended(FIRST, outcome, T0 + minutes(1.7), reason="the end"))
    record = world.records[FIRST]
    assert record.state is outcome and record.ended_at == T0 + minutes(1.7)
    assert (record.cause is Cause.DEADLINE) == (outcome is LaunchState.MISSED)
    assert core.live_record(FIRST) is None
    assert world.started == [FIRST]  # never launched twice


def test_a_failed_launch_that_waited_for_resources_is_retried() -> None:
    world = World()
    core = pending_first(world, Job(retries=1))
    world.commit(core.run_ended(FIRST, LaunchState.FAILED, T0 + minutes(1.5)))
    assert world.records[FIRST].state is LaunchState.RETRYING
    plan = world.commit(core.tick(T0 + minutes(1.5) + seconds(10)))
    assert [r.run_id for r in plan.starts] == [f"{FIRST}~2"]
    assert world.records[FIRST].attempts[0].state is LaunchState.FAILED


def test_forbid_skips_slots_while_a_launch_waits_for_resources() -> None:
    world = World()
    core = pending_first(world, Job(concurrency="forbid"))
    plan = world.commit(core.tick(T0 + minutes(2)))
    assert not plan.starts
    assert world.records[SECOND].state is LaunchState.SKIPPED
    assert world.records[SECOND].reason == f"overlap: {FIRST} is queued"


def test_queue_waits_behind_a_launch_waiting_for_resources_and_starts_when_it_ends() -> None:
    world = World()
    core = pending_first(world, Job(concurrency="queue"))
    world.commit(core.tick(T0 + minutes(2)))
    behind = world.records[SECOND]
    assert behind.state is LaunchState.QUEUED and behind.cause is Cause.WAITING_FOR_RUN
    assert not behind.launched
    plan = world.commit(core.run_ended(FIRST, LaunchState.SUCCEEDED, T0 + minutes(2.5)))
    assert [r.launch_id for r in plan.starts] == [SECOND]


def test_replace_stops_a_launch_waiting_for_resources_through_its_executor() -> None:
    world = World()
    core = pending_first(world, Job(concurrency="replace"))
    plan = world.commit(core.tick(T0 + minutes(2)))
    assert [r.launch_id for r in plan.stops] == [FIRST]
    assert [r.launch_id for r in plan.starts] == [SECOND]
    world.commit(core.run_ended(FIRST, LaunchState.FAILED, T0 + minutes(2.1)))
    ended = world.records[FIRST]
    assert (ended.state, ended.cause) == (LaunchState.STOPPED, Cause.REPLACED)


@pytest.mark.parametrize("how", ["remove", "pause"])
def test_removing_or_pausing_the_job_stops_a_launch_waiting_for_resources(how: str) -> None:
    world = World()
    job = Job()
    core = pending_first(world, job)
    if how == "remove":
        plan = world.commit(core.remove_job("backup", T0 + minutes(1.5)))
        cause, reason = Cause.JOB_REMOVED, "the job was removed"
    else:
        plan = world.commit(core.set_job(job.but(paused=True), None, T0 + minutes(1.5)))
        cause, reason = Cause.PAUSED, "the job was paused"
    assert [r.launch_id for r in plan.stops] == [FIRST]
    assert world.records[FIRST].state is LaunchState.QUEUED  # until its executor says
    assert world.records[FIRST].reason == f"stopping: {reason}"
    # A pending report arriving meanwhile does not hide the stop.
    assert not core.run_pending(FIRST, REASON).records
    world.commit(core.run_ended(FIRST, LaunchState.FAILED, T0 + minutes(1.6), signal=15))
    ended = world.records[FIRST]
    assert (ended.state, ended.cause, ended.reason) == (LaunchState.STOPPED, cause, reason)
    assert core.live_record(FIRST) is None


def test_a_launch_paused_while_being_submitted_is_stopped_once_it_waits() -> None:
    world = World()
    job = Job()
    core = leader(world, job)
    world.commit(core.tick(T0 + minutes(1)))
    assert not world.commit(core.set_job(job.but(paused=True), None, T0 + minutes(1.1))).stops
    plan = world.commit(core.run_pending(FIRST, REASON))
    assert [r.launch_id for r in plan.stops] == [FIRST]
    world.commit(core.run_ended(FIRST, LaunchState.STOPPED, T0 + minutes(1.2)))
    assert world.records[FIRST].cause is Cause.PAUSED


def test_a_stop_that_raced_the_start_keeps_its_reason_and_ends_stopped() -> None:
    world = World()
    job = Job()
    core = pending_first(world, job)
    world.commit(core.set_job(job.but(paused=True), None, T0 + minutes(1.5)))
    world.commit(core.run_started(FIRST, T0 + minutes(1.55)))
    assert world.records[FIRST].state is LaunchState.RUNNING
    assert world.records[FIRST].reason == "stopping: the job was paused"
    world.commit(core.run_ended(FIRST, LaunchState.FAILED, T0 + minutes(1.6), signal=15))
    assert (world.records[FIRST].state, world.records[FIRST].cause) == (LaunchState.STOPPED,
                                                                        Cause.PAUSED)


def test_pausing_leaves_a_running_launch_alone() -> None:
    world = World()
    job = Job()
    core = pending_first(world, job)
    world.commit(core.run_started(FIRST, T0 + minutes(1.2)))
    assert not world.commit(core.set_job(job.but(paused=True), None, T0 + minutes(1.5))).stops
    assert world.records[FIRST].state is LaunchState.RUNNING


def test_a_launch_queued_for_a_run_is_still_dropped_when_its_job_is_removed() -> None:
    world = World()
    core = pending_first(world, Job(concurrency="queue"))
    world.commit(core.tick(T0 + minutes(2)))
    plan = world.commit(core.remove_job("backup", T0 + minutes(2.5)))
    assert [r.launch_id for r in plan.stops] == [FIRST]
    assert world.records[SECOND].state is LaunchState.SKIPPED
    assert world.records[SECOND].cause is Cause.JOB_REMOVED


def test_a_new_leader_does_not_relaunch_a_launch_waiting_for_resources() -> None:
    world = World()
    job = Job(concurrency="allow")
    pending_first(world, job)
    core = world.takeover([job], T0 + minutes(1.5))
    assert core.live_record(FIRST) == world.records[FIRST]
    assert not world.commit(core.tick(T0 + minutes(1.5))).starts
    world.commit(core.run_ended(FIRST, LaunchState.SUCCEEDED, T0 + minutes(1.8)))
    assert world.records[FIRST].state is LaunchState.SUCCEEDED
    assert world.started == [FIRST]


# -- takeover through the rounds: the executor is asked ----------------------------


def spec(**fields: Any) -> JobSpec:
    return build_spec({"name": "backup", "schedule": "* * * * *", "command": "backup.sh",
                       **fields})


def waiting_record() -> LaunchRecord:
    return LaunchRecord(launch_id=FIRST, job="backup", slot=T0 + minutes(1),
                        state=LaunchState.QUEUED, cause=Cause.WAITING_FOR_RESOURCES,
                        reason=REASON, fence=7, executor="local", location="here",
                        run_id=FIRST, intent_at=T0 + minutes(1))


def taken_over(**fields: Any) -> LeaderRounds:
    rounds = LeaderRounds(fence=8, replica="r2", local_location="here")
    rounds.load([JobChanged(spec(**fields), Cursor(T0 + minutes(1)))], T0)
    rounds.restore([waiting_record()], T0 + minutes(1.5))
    return rounds


def test_takeover_asks_the_executor_about_a_launch_waiting_for_resources() -> None:
    rounds = taken_over()
    assert [r.launch_id for r in rounds.to_settle()] == [FIRST]
    still = RunStatus(FIRST, RunState.PENDING, reason="pending in Slurm: Priority")
    decision = rounds.decide([Settled(FIRST, still)], T0 + minutes(1.5))
    assert not decision.starts
    assert [r.launch_id for r in decision.follows] == [FIRST]
    record = decision.records[FIRST]
    assert (record.state, record.reason) == (LaunchState.QUEUED, "pending in Slurm: Priority")


def test_takeover_adopts_a_launch_that_started_while_no_leader_ran() -> None:
    rounds = taken_over()
    status = RunStatus(FIRST, RunState.RUNNING, pid=4, started_at=T0 + minutes(1.2))
    decision = rounds.decide([Settled(FIRST, status)], T0 + minutes(1.5))
    assert not decision.starts
    assert decision.records[FIRST].state is LaunchState.RUNNING


@pytest.mark.parametrize(("idempotent", "state"), [(False, LaunchState.UNKNOWN),
                                                    (True, LaunchState.LAUNCHING)])
def test_a_launch_waiting_for_resources_its_executor_forgot_fails_closed(
        idempotent: bool, state: LaunchState) -> None:
    # It reached its executor once (it was pending there): not an intent never
    # received, so it is not simply started again.
    rounds = taken_over(idempotent=idempotent)
    decision = rounds.decide([Settled(FIRST, RunStatus(FIRST, RunState.NOT_FOUND))],
                             T0 + minutes(1.5))
    assert decision.records[FIRST].state is state
    assert [s.request.launch_id for s in decision.starts] == ([f"{FIRST}~2"] if idempotent
                                                               else [])


@pytest.mark.parametrize(("removed", "cause"), [(False, Cause.PAUSED),
                                                (True, Cause.JOB_REMOVED)])
def test_a_new_leader_stops_a_waiting_launch_of_a_job_paused_or_removed_meanwhile(
        removed: bool, cause: Cause) -> None:
    rounds = LeaderRounds(fence=8, replica="r2", local_location="here")
    if not removed:
        rounds.load([JobChanged(spec(paused=True), Cursor(T0 + minutes(1)))], T0)
    rounds.restore([waiting_record()], T0 + minutes(1.5))
    assert [r.launch_id for r in rounds.to_settle()] == [FIRST]
    decision = rounds.decide([Settled(FIRST, RunStatus(FIRST, RunState.PENDING,
                                                       reason=REASON))], T0 + minutes(1.5))
    assert [r.launch_id for r in decision.stops] == [FIRST]
    assert [r.launch_id for r in decision.follows] == [FIRST]
    stopped = rounds.decide([RunEnded(FIRST, RunStatus(FIRST, RunState.STOPPED))],
                            T0 + minutes(1.6))
    assert (stopped.records[FIRST].state, stopped.records[FIRST].cause) == (
        LaunchState.STOPPED, cause)


def test_a_pending_report_for_a_removed_job_stops_nothing_twice() -> None:
    rounds = taken_over()
    decision = rounds.decide([JobRemoved("backup")], T0 + minutes(1.5))
    assert [r.launch_id for r in decision.stops] == [FIRST]
    again = rounds.decide([RunPending(FIRST, RunStatus(FIRST, RunState.PENDING,
                                                       reason=REASON))], T0 + minutes(1.6))
    assert not again.stops and FIRST not in again.records
