"""Staging: launches committed ahead of their slot, prepared, released at the slot.

The promises stay as they are: the intent is committed before anything of the
job exists; nothing is released before its slot nor without a release mark
committed first; a staged launch no leader released is known not to have
started and runs once; a job paused, removed or edited before its slot is let go.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from distcron.executors.base import RunState, RunStatus
from distcron.jobs import JobSpec, build_spec
from distcron.scheduler.inputs import (
    JobChanged,
    JobRemoved,
    RunStarted,
    Settled,
    StoreRestored,
)
from distcron.scheduler.records import Cause, LaunchRecord, LaunchState
from distcron.scheduler.rounds import LeaderRounds
from distcron.store.layout import Cursor
from tests.scheduler.world import T0, minutes, seconds

SLOT = T0 + minutes(60)  # the herd's slot: 07:00
LAUNCH = "report@2026-11-24T07:00:00Z"
LEAD = seconds(5)


def spec(**fields: Any) -> JobSpec:
    return build_spec({"name": "report", "schedule": "0 7 * * *", "command": "report.sh",
                       **fields})


def leader(*jobs: JobSpec, limit_executors: frozenset[str] = frozenset({"local"})
           ) -> LeaderRounds:
    rounds = LeaderRounds(7, "r7", "here", stage_lead=LEAD, staging_executors=limit_executors)
    rounds.load([JobChanged(job, Cursor(T0)) for job in jobs], T0)
    return rounds


def test_a_slot_is_committed_and_staged_within_the_lead_and_released_at_its_slot() -> None:
    rounds = leader(spec())
    assert not rounds.decide([], T0)
    assert rounds.next_wakeup() == SLOT - LEAD
    assert not rounds.decide([], SLOT - LEAD - seconds(1))
    staged = rounds.decide([], SLOT - LEAD)
    assert staged.created == {LAUNCH} and staged.records[LAUNCH].staged
    assert staged.cursors["report"] == Cursor(SLOT)
    assert [s.record.launch_id for s in staged.stages] == [LAUNCH]
    assert not staged.starts and not staged.releases and not staged.release_marks
    assert rounds.next_wakeup() == SLOT
    assert not rounds.decide([], SLOT - seconds(1)).releases
    released = rounds.decide([], SLOT)
    assert [s.record.launch_id for s in released.releases] == [LAUNCH]
    assert list(released.release_marks.values()) == [(LAUNCH,)]
    assert not released.records  # the intent was written when it was staged


def test_the_release_mark_goes_once_every_launch_it_names_has_started() -> None:
    rounds = leader(spec())
    rounds.decide([], SLOT - LEAD)
    [mark] = rounds.decide([], SLOT).release_marks
    running = RunStatus(LAUNCH, RunState.RUNNING, pid=5, started_at=SLOT)
    started = rounds.decide([RunStarted(LAUNCH, running)], SLOT + seconds(0.1))
    assert started.release_cleanups == (mark,)


def test_a_job_with_a_live_run_is_not_staged_and_is_decided_at_the_slot() -> None:
    rounds = leader(spec(schedule="*/30 * * * * *"))
    first = rounds.decide([], T0 + seconds(25))
    assert first.stages  # 06:00:30, nothing live yet
    rounds.decide([], T0 + seconds(30))
    # 06:00:30 runs; 06:01:00 is not staged while it does (forbid), so the
    # overlap policy still sees the run at the slot.
    assert not rounds.decide([], T0 + seconds(55)).stages
    at_slot = rounds.decide([], T0 + seconds(60))
    [skipped] = at_slot.records.values()
    assert skipped.state is LaunchState.SKIPPED and skipped.cause is Cause.OVERLAP


def test_a_job_paused_or_removed_before_its_slot_is_let_go_and_never_released() -> None:
    for change, cause in ((JobChanged(spec(paused=True)), Cause.PAUSED),
                          (JobRemoved("report"), Cause.JOB_REMOVED)):
        rounds = leader(spec())
        rounds.decide([], SLOT - LEAD)
        decision = rounds.decide([change], SLOT - seconds(2))
        assert [r.launch_id for r in decision.unstages] == [LAUNCH]
        record = decision.records[LAUNCH]
        assert (record.state, record.cause) == (LaunchState.SKIPPED, cause)
        assert not rounds.decide([], SLOT).releases


def test_a_job_edited_before_its_slot_is_staged_again_with_its_new_command() -> None:
    rounds = leader(spec())
    rounds.decide([], SLOT - LEAD)
    edited = rounds.decide([JobChanged(spec(command="report.sh --new"))], SLOT - seconds(2))
    assert [r.launch_id for r in edited.unstages] == [LAUNCH]
    [again] = edited.stages
    assert again.request.command == "report.sh --new"
    [release] = rounds.decide([], SLOT).releases
    assert release.request.command == "report.sh --new"


def test_a_job_whose_schedule_no_longer_fires_at_the_staged_slot_skips_it() -> None:
    rounds = leader(spec())
    rounds.decide([], SLOT - LEAD)
    edited = rounds.decide([JobChanged(spec(schedule="30 7 * * *"))], SLOT - seconds(2))
    record = edited.records[LAUNCH]
    assert (record.state, record.cause) == (LaunchState.SKIPPED, Cause.EDITED)
    assert not edited.stages and not rounds.decide([], SLOT).releases


def test_only_executors_that_stage_are_staged() -> None:
    rounds = leader(spec(), limit_executors=frozenset())
    assert rounds.next_wakeup() == SLOT
    assert not rounds.decide([], SLOT - LEAD).stages
    assert [s.record.launch_id for s in rounds.decide([], SLOT).starts] == [LAUNCH]


def _staged_record(fence: int = 7) -> LaunchRecord:
    return LaunchRecord(launch_id=LAUNCH, job="report", slot=SLOT,
                        state=LaunchState.LAUNCHING, fence=fence, executor="local",
                        location="there", run_id=LAUNCH, intent_at=SLOT - LEAD, staged=True)


def _takeover(now: Any, marks: dict[str, list[str] | None]) -> LeaderRounds:
    rounds = LeaderRounds(8, "r8", "here", stage_lead=LEAD,
                          staging_executors=frozenset({"local"}))
    rounds.load([JobChanged(spec(), Cursor(SLOT))], now)
    rounds.restore([_staged_record()], now)
    rounds.load_marks(marks, now)
    return rounds


def test_a_new_leader_releases_a_staged_launch_its_executor_still_holds() -> None:
    rounds = _takeover(SLOT - seconds(2), {})
    adopted = rounds.decide([Settled(LAUNCH, RunStatus(LAUNCH, RunState.STAGED))],
                            SLOT - seconds(2))
    assert not adopted.stages and not adopted.releases
    assert [s.record.launch_id for s in rounds.decide([], SLOT).releases] == [LAUNCH]


def test_a_staged_launch_no_leader_released_is_staged_here_and_runs_once() -> None:
    rounds = _takeover(SLOT + seconds(3), {})
    # Another machine's executor staged it: this one cannot ask, but no release
    # mark names it, so it certainly never started.
    decision = rounds.decide([Settled(LAUNCH, None)], SLOT + seconds(3))
    assert [s.record.launch_id for s in decision.stages] == [LAUNCH]
    assert decision.records[LAUNCH].location == "here"
    assert [s.record.launch_id for s in decision.releases] == [LAUNCH]
    assert not rounds.decide([], SLOT + seconds(4)).releases


def test_a_launch_staged_in_a_restored_copy_of_the_store_is_missed_never_run() -> None:
    # Its release mark may have been written after the copy: no mark proves nothing.
    now = SLOT + seconds(3)
    rounds = _takeover(now, {})
    restored = rounds.decide([StoreRestored(now, b"{}"), Settled(LAUNCH, None)], now)
    record = restored.records[LAUNCH]
    assert (record.state, record.cause) == (LaunchState.MISSED, Cause.RESTORED)
    assert not restored.stages and not restored.releases and not restored.starts
    assert [r.launch_id for r in restored.unstages] == [LAUNCH]


def test_a_staged_launch_whose_release_was_committed_fails_closed() -> None:
    rounds = _takeover(SLOT + seconds(3), {"7-1": [LAUNCH]})
    decision = rounds.decide([Settled(LAUNCH, None)], SLOT + seconds(3))
    assert decision.records[LAUNCH].state is LaunchState.UNKNOWN
    assert not decision.releases and not decision.stages
    assert decision.release_cleanups == ("7-1",)


def test_an_unreadable_release_mark_fails_every_staged_launch_closed() -> None:
    rounds = _takeover(SLOT + seconds(3), {"7-1": None})
    decision = rounds.decide([Settled(LAUNCH, None)], SLOT + seconds(3))
    assert decision.records[LAUNCH].state is LaunchState.UNKNOWN


def test_a_staged_launch_never_released_past_its_starting_deadline_is_missed() -> None:
    late = SLOT + timedelta(hours=2)
    rounds = _takeover(late, {})
    decision = rounds.decide([Settled(LAUNCH, RunStatus(LAUNCH, RunState.NOT_FOUND))], late)
    record = decision.records[LAUNCH]
    assert (record.state, record.cause) == (LaunchState.MISSED, Cause.DEADLINE)
    assert not decision.releases


def test_staging_is_bounded_by_the_lead_and_by_one_launch_per_job() -> None:
    rounds = leader(spec(schedule="* * * * * *", concurrency="allow"))
    decision = rounds.decide([], T0)
    # Every second is due within the lead, yet one at a time is staged.
    assert [s.record.slot for s in decision.stages] == [T0 + seconds(1)]
    released = rounds.decide([], T0 + seconds(1))
    assert [s.record.slot for s in released.releases] == [T0 + seconds(1)]
    assert [s.record.slot for s in released.stages] == [T0 + seconds(2)]
