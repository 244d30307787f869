"""Staging on worker agents: a launch due within the lead is committed with its
assignment (``release_by`` in it) on a worker chosen then, and released at its
slot by a release mark alone; nothing is started here.

The promises are those of local staging: the intent (and here the assignment)
is committed before anything of the job exists; the mark that releases it is
committed at the slot, not before; a staged launch no mark names is known not
to have started, so a next leader releases it once; a job paused, removed or
edited away from its worker before the slot is let go (its assignment deleted).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from distcron.executors.base import RunState, RunStatus
from distcron.jobs import JobSpec, build_spec
from distcron.scheduler.decision import Decision, WorkerRun
from distcron.scheduler.inputs import JobChanged, JobRemoved, Reported, WorkersChanged
from distcron.scheduler.policy import ON_TIME_TOLERANCE, WORKER_GRACE
from distcron.scheduler.records import Cause, LaunchRecord, LaunchState
from distcron.scheduler.rounds import LeaderRounds
from distcron.store.layout import Cursor
from tests.scheduler.world import T0, Worker, minutes, seconds

SLOT = T0 + minutes(60)
LAUNCH = "report@2026-11-24T07:00:00Z"
LEAD = seconds(5)


def spec(**fields: Any) -> JobSpec:
    return build_spec({"name": "report", "schedule": "0 7 * * *", "command": "report.sh",
                       "executor": "agent", **fields})


def leader(job: JobSpec, *workers: Worker, fence: int = 7) -> LeaderRounds:
    rounds = LeaderRounds(fence, f"r{fence}", "here", stage_lead=LEAD,
                          staging_executors=frozenset({"local", "agent"}))
    rounds.load([JobChanged(job, Cursor(T0))], T0)
    rounds.decide([WorkersChanged({w.id: w for w in workers})], T0)
    return rounds


def staged(rounds: LeaderRounds) -> Decision:
    decision = rounds.decide([], SLOT - LEAD)
    assert decision.created == {LAUNCH} and decision.records[LAUNCH].staged
    return decision


def test_a_launch_on_a_worker_is_assigned_ahead_and_released_by_its_mark_alone() -> None:
    rounds = leader(spec(), Worker("w1"), Worker("w2", load=0.9))
    decision = staged(rounds)
    assert decision.records[LAUNCH].worker == "w1"
    [assignment] = decision.assignments
    assert assignment.record.launch_id == LAUNCH
    assert assignment.release_by == SLOT + ON_TIME_TOLERANCE
    # Nothing for this replica's executors: the worker prepares it.
    assert not decision.stages and not decision.starts
    assert not rounds.decide([], SLOT - seconds(1)).release_marks
    released = rounds.decide([], SLOT)
    assert list(released.release_marks.values()) == [(LAUNCH,)]
    assert not released.releases and not released.assignments and not released.records
    # Its mark goes once its worker says it started.
    running = rounds.decide([Reported(LAUNCH, "w1", RunStatus(
        LAUNCH, RunState.RUNNING, pid=9, started_at=SLOT))], SLOT + seconds(1))
    assert running.release_cleanups == tuple(released.release_marks)


def test_no_worker_that_stages_means_no_staging_and_a_plain_assignment_at_the_slot() -> None:
    rounds = leader(spec(), Worker("old", stages=False))
    assert not rounds.decide([], SLOT - LEAD).writes()
    # Not woken again and again until the slot.
    assert rounds.next_wakeup() == SLOT
    decision = rounds.decide([], SLOT)
    [assignment] = decision.assignments
    assert assignment.record.worker == "old" and assignment.release_by is None
    assert not decision.release_marks


def test_a_staged_launch_takes_one_of_its_workers_slots() -> None:
    rounds = leader(spec(schedule="0 7 * * *"), Worker("w1", slots=1))
    staged(rounds)
    other = build_spec({"name": "other", "schedule": "0 7 * * *", "command": "x",
                        "executor": "agent"})
    rounds.decide([JobChanged(other, Cursor(T0))], SLOT - LEAD)
    decision = rounds.decide([], SLOT)
    record = decision.records["other@2026-11-24T07:00:00Z"]
    assert (record.state, record.cause) == (LaunchState.QUEUED, Cause.WAITING_FOR_WORKER)


def _cleanup(decision: Decision) -> list[WorkerRun]:
    return list(decision.cleanups)


def test_a_job_paused_or_removed_before_its_slot_is_let_go_from_its_worker() -> None:
    for change in (JobChanged(spec(paused=True), Cursor(SLOT)), JobRemoved("report")):
        rounds = leader(spec(), Worker())
        staged(rounds)
        decision = rounds.decide([change], SLOT - seconds(2))
        assert decision.records[LAUNCH].state is LaunchState.SKIPPED
        assert _cleanup(decision) == [WorkerRun("w1", LAUNCH, LAUNCH)]
        assert not decision.assignments
        assert not rounds.decide([], SLOT).release_marks


def test_a_job_edited_before_its_slot_is_assigned_again_to_the_same_worker() -> None:
    rounds = leader(spec(), Worker("w1"), Worker("w2", load=0.5))
    staged(rounds)
    decision = rounds.decide([JobChanged(spec(command="report-v2.sh"), Cursor(SLOT))],
                             SLOT - seconds(2))
    [assignment] = decision.assignments
    assert assignment.request.command == "report-v2.sh"
    assert assignment.record.worker == "w1" and assignment.release_by is not None
    assert not _cleanup(decision)
    assert list(rounds.decide([], SLOT).release_marks.values()) == [(LAUNCH,)]


def test_a_job_whose_tags_change_before_its_slot_skips_it_as_edited() -> None:
    rounds = leader(spec(), Worker("w1"), Worker("gpu", tags=("gpu",), load=0.5))
    staged(rounds)
    decision = rounds.decide([JobChanged(spec(tags=["gpu"]), Cursor(SLOT))], SLOT - seconds(2))
    record = decision.records[LAUNCH]
    assert (record.state, record.cause) == (LaunchState.SKIPPED, Cause.EDITED)
    assert _cleanup(decision) == [WorkerRun("w1", LAUNCH, LAUNCH)]


def _staged_record(rounds: LeaderRounds) -> LaunchRecord:
    return staged(rounds).records[LAUNCH]


def _takeover(record: LaunchRecord, now: Any, marks: dict[str, list[str] | None],
              job: JobSpec | None = None) -> LeaderRounds:
    rounds = LeaderRounds(8, "r8", "here", stage_lead=LEAD,
                          staging_executors=frozenset({"local", "agent"}))
    rounds.load([JobChanged(job or spec(), Cursor(SLOT))], now)
    rounds.restore([record], now)
    rounds.load_marks(marks, now)
    return rounds


def test_a_new_leader_releases_what_no_mark_names_once_and_writes_no_assignment() -> None:
    record = _staged_record(leader(spec(), Worker()))
    rounds = _takeover(record, SLOT - seconds(2), {})
    first = rounds.decide([WorkersChanged({"w1": Worker()})], SLOT - seconds(2))
    assert not first.assignments and not first.release_marks and not first.starts
    released = rounds.decide([], SLOT)
    assert list(released.release_marks.values()) == [(LAUNCH,)]
    assert not released.assignments and not released.starts
    assert not rounds.decide([], SLOT + seconds(1)).release_marks


def test_a_new_leader_leaves_a_launch_a_mark_names_to_its_workers_report() -> None:
    record = _staged_record(leader(spec(), Worker()))
    rounds = _takeover(record, SLOT + seconds(1), {"7-1": [LAUNCH]})
    decision = rounds.decide([WorkersChanged({"w1": Worker()})], SLOT + seconds(1))
    assert not decision.release_marks and not decision.assignments and not decision.starts
    assert LAUNCH not in decision.records
    reported = rounds.decide([Reported(LAUNCH, "w1", RunStatus(
        LAUNCH, RunState.SUCCEEDED, exit_code=0, started_at=SLOT))], SLOT + seconds(2))
    assert reported.records[LAUNCH].state is LaunchState.SUCCEEDED
    assert reported.release_cleanups == ("7-1",)


def test_a_new_leader_past_the_starting_deadline_misses_it_and_lets_it_go() -> None:
    job = spec(starting_deadline=60)
    record = _staged_record(leader(job, Worker()))
    late = SLOT + timedelta(minutes=5)
    rounds = _takeover(record, late, {}, job)
    decision = rounds.decide([WorkersChanged({"w1": Worker()})], late)
    missed = decision.records[LAUNCH]
    assert (missed.state, missed.cause) == (LaunchState.MISSED, Cause.DEADLINE)
    assert _cleanup(decision) == [WorkerRun("w1", LAUNCH, LAUNCH)]
    assert not decision.release_marks


def test_a_launch_whose_worker_is_gone_at_its_slot_is_placed_again_without_a_mark() -> None:
    rounds = leader(spec(), Worker("w1"), Worker("w2", load=0.5))
    staged(rounds)
    rounds.decide([WorkersChanged({"w2": Worker("w2", load=0.5)})], SLOT - seconds(1))
    decision = rounds.decide([], SLOT)
    # No mark names it: its old worker, back, would never start it.
    assert not decision.release_marks
    [assignment] = decision.assignments
    assert assignment.record.worker == "w2" and assignment.release_by is None
    assert not assignment.record.staged
    assert _cleanup(decision) == [WorkerRun("w1", LAUNCH, LAUNCH)]


def test_with_no_worker_left_at_its_slot_it_waits_for_one() -> None:
    rounds = leader(spec(), Worker("w1"))
    staged(rounds)
    rounds.decide([WorkersChanged({})], SLOT - seconds(1))
    decision = rounds.decide([], SLOT)
    record = decision.records[LAUNCH]
    assert (record.state, record.cause) == (LaunchState.QUEUED, Cause.WAITING_FOR_WORKER)
    assert _cleanup(decision) == [WorkerRun("w1", LAUNCH, LAUNCH)]
    assert not decision.release_marks and not decision.assignments
    placed = rounds.decide([WorkersChanged({"w3": Worker("w3")})], SLOT + seconds(2))
    assert [a.record.worker for a in placed.assignments] == ["w3"]


def test_a_worker_gone_for_longer_than_its_grace_before_the_slot_loses_nothing_staged() -> None:
    # A lead longer than the worker grace: the grace ends before the slot.
    lead = WORKER_GRACE + seconds(5)
    rounds = LeaderRounds(7, "r7", "here", stage_lead=lead,
                          staging_executors=frozenset({"local", "agent"}))
    rounds.load([JobChanged(spec(), Cursor(T0))], T0)
    rounds.decide([WorkersChanged({"w1": Worker("w1"), "w2": Worker("w2", load=0.5)})], T0)
    assert rounds.decide([], SLOT - lead).records[LAUNCH].worker == "w1"
    rounds.decide([WorkersChanged({"w2": Worker("w2", load=0.5)})], SLOT - lead + seconds(1))
    after_grace = rounds.decide([], SLOT - seconds(2))
    assert LAUNCH not in after_grace.records  # never started: not lost
    decision = rounds.decide([], SLOT)
    assert [a.record.worker for a in decision.assignments] == ["w2"]
    assert _cleanup(decision) == [WorkerRun("w1", LAUNCH, LAUNCH)]
    rounds.decide([Reported(LAUNCH, "w2", RunStatus(LAUNCH, RunState.SUCCEEDED, exit_code=0,
                                                    started_at=SLOT))], SLOT + seconds(1))
    # The job stages again: its next slot goes ahead as before.
    assert rounds.decide([], SLOT + timedelta(days=1) - lead).records[
        "report@2026-11-25T07:00:00Z"].staged
