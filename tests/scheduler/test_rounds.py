"""The leader's round as one decision: built state and times in, one Decision out.

These drive :class:`LeaderRounds` with the inputs a leader would hand it and
the instants a clock would show, and check everything the decision says to
write and do.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from distcron.executors.base import RunState, RunStatus
from distcron.jobs import JobSpec, build_spec
from distcron.scheduler.inputs import (
    JobChanged,
    JobRemoved,
    JobUnreadable,
    Reported,
    RunEnded,
    RunStarted,
    RunUnknown,
    Settled,
    StoreRestored,
    Triggered,
    WorkersChanged,
)
from distcron.scheduler.policy import PLACEMENT_RETRY
from distcron.scheduler.records import Cause, LaunchKind, LaunchRecord, LaunchState, launch_id_for
from distcron.scheduler.rounds import LeaderRounds
from distcron.store.layout import Cursor
from tests.scheduler.world import T0, Worker, minutes, seconds

FIRST = "backup@2026-11-24T06:01:00Z"


def spec(**fields: Any) -> JobSpec:
    return build_spec({"name": "backup", "schedule": "* * * * *", "command": "backup.sh",
                       **fields})


def leader(*jobs: JobSpec, workers: tuple[Worker, ...] = ()) -> LeaderRounds:
    rounds = LeaderRounds(fence=7, replica="r1", local_location="here")
    rounds.load([JobChanged(job, Cursor(T0)) for job in jobs], T0)
    rounds.decide([WorkersChanged({w.id: w for w in workers})], T0)
    return rounds


def test_a_due_slot_is_one_intent_with_its_cursor_and_a_start_with_the_jobs_request() -> None:
    rounds = leader(spec(env={"TARGET": "s3"}, timeout=60))
    decision = rounds.decide([], T0 + minutes(1))
    assert decision.created == {FIRST}
    assert decision.records[FIRST].state is LaunchState.LAUNCHING
    assert decision.cursors["backup"] == Cursor(T0 + minutes(1))
    [start] = decision.starts
    request = start.request
    assert (request.launch_id, request.fence, request.command) == (FIRST, 7, "backup.sh")
    assert request.env == {"TARGET": "s3"} and request.timeout == 60
    assert request.launch_env()["DISTCRON_SLOT"] == "2026-11-24T06:01:00Z"
    assert not decision.assignments


def test_nothing_due_decides_nothing() -> None:
    rounds = leader(spec())
    assert not rounds.decide([], T0 + seconds(30))
    assert rounds.next_wakeup() == T0 + minutes(1)


def test_a_launch_on_a_worker_is_an_assignment_written_with_its_intent_not_a_local_start(
        ) -> None:
    rounds = leader(spec(executor="agent"), workers=(Worker(),))
    decision = rounds.decide([], T0 + minutes(1))
    assert not decision.starts
    [assignment] = decision.assignments
    assert assignment.record.worker == "w1" and assignment.request.launch_id == FIRST
    assert decision.records[FIRST].worker == "w1"


def test_a_launch_waiting_for_a_worker_is_written_once_however_often_it_looks_again() -> None:
    rounds = leader(spec(executor="agent", tags=["gpu"]), workers=(Worker(),))
    first = rounds.decide([], T0 + minutes(1))
    assert first.records[FIRST].cause is Cause.WAITING_FOR_WORKER
    now = T0 + minutes(1)
    for _ in range(5):
        now += PLACEMENT_RETRY
        assert not rounds.decide([], now).writes()
        # Workers rewrite their registrations every few seconds.
        assert not rounds.decide([WorkersChanged({"w1": Worker(load=0.5)})], now).writes()
    placed = rounds.decide([WorkersChanged({"w2": Worker("w2", tags=("gpu",))})], now)
    assert [a.record.worker for a in placed.assignments] == ["w2"]


def test_a_run_that_ended_is_recorded_with_its_output_and_retried_when_asked() -> None:
    rounds = leader(spec(retries=1, retry_backoff=5))
    rounds.decide([], T0 + minutes(1))
    started = RunStatus(FIRST, RunState.RUNNING, pid=42, started_at=T0 + minutes(1))
    running = rounds.decide([RunStarted(FIRST, started)], T0 + minutes(1))
    assert running.records[FIRST].state is LaunchState.RUNNING
    failed = RunStatus(FIRST, RunState.FAILED, exit_code=3, ended_at=T0 + minutes(1.5))
    ended = rounds.decide([RunEnded(FIRST, failed, b"oops\n")], T0 + minutes(1.5))
    assert ended.records[FIRST].state is LaunchState.RETRYING
    assert ended.outputs == {FIRST: b"oops\n"}
    retried = rounds.decide([], T0 + minutes(1.5) + seconds(5))
    [start] = retried.starts
    assert start.request.launch_id == f"{FIRST}~2"
    # The second attempt's output is its own: the first one's stays.
    second = RunStatus(f"{FIRST}~2", RunState.SUCCEEDED, exit_code=0)
    done = rounds.decide([RunEnded(FIRST, second, b"fine\n")], T0 + minutes(2) - seconds(1))
    assert done.outputs == {f"{FIRST}~2": b"fine\n"}
    assert [(a.attempt, a.exit_code) for a in done.records[FIRST].attempts] == [(1, 3)]


def test_a_workers_final_report_ends_the_run_and_cleans_up_its_keys() -> None:
    rounds = leader(spec(executor="agent"), workers=(Worker(),))
    rounds.decide([], T0 + minutes(1))
    report = Reported(FIRST, "w1", RunStatus(FIRST, RunState.SUCCEEDED, exit_code=0))
    decision = rounds.decide([report], T0 + minutes(2) - seconds(1))
    assert decision.records[FIRST].state is LaunchState.SUCCEEDED
    assert [(c.worker, c.run_id) for c in decision.cleanups] == [("w1", FIRST)]
    stale = Reported(f"{FIRST}~2", "w1", RunStatus(f"{FIRST}~2", RunState.FAILED))
    assert not rounds.decide([stale], T0 + minutes(2) - seconds(1))


def test_a_trigger_is_consumed_in_the_round_that_launches_it() -> None:
    rounds = leader(spec())
    decision = rounds.decide([Triggered("t1", "backup", "backup@manual-1")], T0 + seconds(5))
    assert decision.consumed_triggers == ("t1",)
    assert decision.created == {"backup@manual-1"}
    assert [s.record.launch_id for s in decision.starts] == ["backup@manual-1"]


def test_backfilled_slots_of_a_job_that_forbids_overlap_wait_in_turn_past_any_deadline(
) -> None:
    rounds = leader(spec(schedule="0 * * * *", starting_deadline=60))
    now = T0 + minutes(10)
    past = [T0 - minutes(60 * n) for n in (3, 2, 1)]
    asked = [Triggered(launch_id_for("backup", s), "backup", launch_id_for("backup", s), s)
             for s in past]
    # The second request of the first slot (written twice) launches nothing more.
    decision = rounds.decide([*asked, asked[0]], now)
    ids = [launch_id_for("backup", s) for s in past]
    assert decision.created == set(ids)
    assert [s.record.launch_id for s in decision.starts] == [ids[0]]
    assert [decision.records[i].state for i in ids] == [
        LaunchState.LAUNCHING, LaunchState.QUEUED, LaunchState.QUEUED]
    assert {r.kind for r in decision.records.values()} == {LaunchKind.BACKFILL}
    assert decision.cursors == {}  # the job's own slots are not touched
    assert len(decision.consumed_triggers) == 4
    ended = RunEnded(ids[0], RunStatus(ids[0], RunState.SUCCEEDED, exit_code=0))
    later = rounds.decide([ended], now + minutes(5))
    assert [s.record.launch_id for s in later.starts] == [ids[1]]


def test_takeover_starts_an_intent_never_received_and_follows_a_run_still_going() -> None:
    rounds = LeaderRounds(fence=8, replica="r2", local_location="here")
    rounds.load([JobChanged(spec(concurrency="allow"), Cursor(T0 + minutes(2)))], T0)
    never = _live(FIRST, LaunchState.LAUNCHING)
    going = _live("backup@2026-11-24T06:02:00Z", LaunchState.LAUNCHING)
    rounds.restore([never, going], T0 + minutes(2))
    assert {r.launch_id for r in rounds.to_settle()} == {never.launch_id, going.launch_id}
    decision = rounds.decide([
        Settled(never.launch_id, RunStatus(never.launch_id, RunState.NOT_FOUND)),
        Settled(going.launch_id, RunStatus(going.launch_id, RunState.RUNNING, pid=9))],
        T0 + minutes(2))
    assert [s.record.launch_id for s in decision.starts] == [never.launch_id]
    assert [r.launch_id for r in decision.follows] == [going.launch_id]
    assert decision.records[going.launch_id].state is LaunchState.RUNNING


def test_takeover_fails_closed_and_relaunches_only_an_idempotent_job() -> None:
    for idempotent, state in ((False, LaunchState.UNKNOWN), (True, LaunchState.LAUNCHING)):
        rounds = LeaderRounds(fence=8, replica="r2", local_location="here")
        rounds.load([JobChanged(spec(idempotent=idempotent), Cursor(T0 + minutes(1)))], T0)
        rounds.restore([_live(FIRST, LaunchState.RUNNING)], T0 + minutes(1))
        decision = rounds.decide([Settled(FIRST, None)], T0 + minutes(1))
        assert decision.records[FIRST].state is state
        if idempotent:
            [start] = decision.starts
            assert start.request.launch_id == f"{FIRST}~2"
            assert start.request.idempotency_key == FIRST


def test_a_run_the_leader_lost_track_of_is_unknown() -> None:
    rounds = leader(spec())
    rounds.decide([], T0 + minutes(1))
    decision = rounds.decide([RunUnknown(FIRST, "the wait kept failing")], T0 + minutes(1))
    assert decision.records[FIRST].state is LaunchState.UNKNOWN


def test_a_job_that_cannot_be_scheduled_is_quarantined_and_the_others_run_on() -> None:
    # Stored before the edge refused it: "@every 420000w" has no slot before year 9999.
    rare = JobSpec.model_construct(**{**spec().model_dump(), "name": "rare",
                                      "schedule": "@every 420000w"})
    rounds = leader(spec())
    decision = rounds.decide([JobChanged(rare), JobUnreadable("gone", "unknown zone")],
                             T0 + seconds(1))
    assert set(decision.quarantined) == {"rare", "gone"}
    assert "no slot" in (decision.quarantined["rare"] or "")
    assert rounds.decide([], T0 + minutes(1)).created == {FIRST}
    fixed = rounds.decide([JobChanged(spec(name="rare", schedule="0 * * * *"))],
                          T0 + minutes(1))
    assert fixed.quarantined == {"rare": None}
    removed = rounds.decide([JobRemoved("gone")], T0 + minutes(1))
    assert removed.quarantined == {"gone": None}


def test_histories_are_pruned_after_every_so_many_records_of_a_job() -> None:
    rounds = LeaderRounds(fence=7, replica="r1", prune_every=3)
    rounds.load([JobChanged(spec(schedule="* * * * * *", concurrency="allow"), Cursor(T0))],
                T0)
    prunes = [rounds.decide([], T0 + seconds(n)).prunes for n in range(1, 7)]
    assert prunes == [(), (), ("backup",), (), (), ("backup",)]


def _live(launch_id: str, state: LaunchState) -> LaunchRecord:
    slot = T0 + timedelta(minutes=int(launch_id[-6:-4]) - 0)
    return LaunchRecord(launch_id=launch_id, job="backup", slot=slot, state=state, fence=7,
                        executor="local", location="here", run_id=launch_id,
                        intent_at=slot)


def test_slots_before_a_restore_are_missed_never_run_and_the_marker_is_cleared_after() -> None:
    rounds = leader(spec())
    now = T0 + minutes(9.5)
    decision = rounds.decide([StoreRestored(now, b'{"at": "..."}')], now)
    assert not decision.starts and not decision.assignments
    [span] = decision.records.values()
    assert (span.state, span.cause, span.count) == (LaunchState.MISSED, Cause.RESTORED, 9)
    assert decision.cursors["backup"] == Cursor(T0 + minutes(9), span.launch_id)
    assert decision.restore_marker == b'{"at": "..."}'
    # The slot after the restore instant runs as usual.
    assert rounds.decide([], T0 + minutes(10)).created == {"backup@2026-11-24T06:10:00Z"}
