"""The scheduler core's decisions, one rule at a time, on a simulated clock."""

from __future__ import annotations

from datetime import datetime

import pytest

from distcron.scheduler.core import SchedulerCore
from distcron.scheduler.policy import PAUSED_ACCOUNTING_INTERVAL
from distcron.scheduler.records import MAX_ATTEMPTS_KEPT, Cause, LaunchKind, LaunchState
from distcron.store.layout import Cursor
from tests.scheduler.world import T0, Job, World, minutes, seconds


def leader(world: World, *jobs: Job, at: datetime = T0) -> SchedulerCore:
    core = SchedulerCore(world.fence, "r1", "here")
    for job in jobs:
        world.commit(core.set_job(job, world.cursors.get(job.name) or Cursor(at), at))
    return core


def test_a_job_launches_each_slot_with_its_launch_id_and_advances_its_cursor() -> None:
    world = World()
    core = leader(world, Job())
    assert core.next_wakeup() == T0 + minutes(1)
    plan = world.commit(core.tick(T0 + minutes(1) + seconds(0.2)))
    assert [r.launch_id for r in plan.starts] == ["backup@2026-11-24T06:01:00Z"]
    record = plan.starts[0]
    assert record.state is LaunchState.LAUNCHING and record.fence == 1
    assert record.location == "here" and record.run_id == record.launch_id
    assert "backup@2026-11-24T06:01:00Z" in plan.created
    assert world.cursors["backup"].slot == T0 + minutes(1)
    assert core.next_wakeup() == T0 + minutes(2)


def test_a_tick_before_the_slot_decides_nothing() -> None:
    world = World()
    core = leader(world, Job())
    assert not core.tick(T0 + seconds(59))


def test_forbid_skips_slots_while_a_run_is_live_as_one_growing_span() -> None:
    world = World()
    core = leader(world, Job())
    world.commit(core.tick(T0 + minutes(1)))
    for n in (2, 3, 4):
        world.commit(core.tick(T0 + minutes(n)))
    skipped = world.of("backup", LaunchState.SKIPPED)
    assert len(skipped) == 1
    span = skipped[0]
    assert span.slot == T0 + minutes(2) and span.until == T0 + minutes(4)
    assert span.count == 3
    assert "overlap: backup@2026-11-24T06:01:00Z is launching" in span.reason


def test_a_span_ends_when_a_slot_launches_and_a_new_one_starts_after() -> None:
    world = World()
    core = leader(world, Job())
    world.commit(core.tick(T0 + minutes(1)))
    world.commit(core.tick(T0 + minutes(2)))
    first = "backup@2026-11-24T06:01:00Z"
    world.commit(core.run_ended(first, LaunchState.SUCCEEDED, T0 + minutes(2.5), exit_code=0))
    world.commit(core.tick(T0 + minutes(3)))
    world.commit(core.tick(T0 + minutes(4)))
    states = [(r.slot, r.state, r.count) for r in world.of("backup")]
    assert states == [
        (T0 + minutes(1), LaunchState.SUCCEEDED, 1),
        (T0 + minutes(2), LaunchState.SKIPPED, 1),
        (T0 + minutes(3), LaunchState.LAUNCHING, 1),
        (T0 + minutes(4), LaunchState.SKIPPED, 1),
    ]


def test_allow_launches_every_slot_even_while_others_run() -> None:
    world = World()
    core = leader(world, Job(concurrency="allow"))
    for n in (1, 2, 3):
        world.commit(core.tick(T0 + minutes(n)))
    assert len(world.of("backup", LaunchState.LAUNCHING)) == 3


def test_replace_stops_the_live_run_and_records_it_as_stopped_when_it_ends() -> None:
    world = World()
    core = leader(world, Job(concurrency="replace"))
    world.commit(core.tick(T0 + minutes(1)))
    plan = world.commit(core.tick(T0 + minutes(2)))
    old, new = "backup@2026-11-24T06:01:00Z", "backup@2026-11-24T06:02:00Z"
    assert [r.launch_id for r in plan.stops] == [old]
    assert [r.launch_id for r in plan.starts] == [new]
    world.commit(core.run_ended(old, LaunchState.FAILED, T0 + minutes(2.1), signal=15))
    ended = world.records[old]
    assert ended.state is LaunchState.STOPPED and ended.reason == f"replaced by {new}"


def test_queue_keeps_one_slot_waiting_and_starts_it_when_the_run_ends() -> None:
    world = World()
    core = leader(world, Job(concurrency="queue"))
    for n in (1, 2, 3):
        world.commit(core.tick(T0 + minutes(n)))
    assert world.records["backup@2026-11-24T06:02:00Z"].state is LaunchState.QUEUED
    third = world.records["backup@2026-11-24T06:03:00Z"]
    assert third.state is LaunchState.SKIPPED
    assert "backup@2026-11-24T06:02:00Z is queued" in third.reason
    plan = world.commit(core.run_ended("backup@2026-11-24T06:01:00Z", LaunchState.SUCCEEDED,
                                       T0 + minutes(3.5), exit_code=0))
    assert [r.launch_id for r in plan.starts] == ["backup@2026-11-24T06:02:00Z"]
    assert world.records["backup@2026-11-24T06:02:00Z"].state is LaunchState.LAUNCHING


def test_after_an_outage_catchup_last_runs_only_the_latest_slot() -> None:
    world = World()
    core = leader(world, Job())
    world.commit(core.tick(T0 + minutes(10) + seconds(30)))
    launched = world.of("backup", LaunchState.LAUNCHING)
    assert [r.slot for r in launched] == [T0 + minutes(10)]
    missed = world.of("backup", LaunchState.MISSED)
    assert len(missed) == 1 and missed[0].count == 9
    assert missed[0].slot == T0 + minutes(1) and missed[0].until == T0 + minutes(9)
    assert "catch-up last" in missed[0].reason


def test_after_an_outage_catchup_none_runs_nothing_that_is_late() -> None:
    world = World()
    core = leader(world, Job(catchup="none"))
    world.commit(core.tick(T0 + minutes(10) + seconds(30)))
    assert not world.of("backup", LaunchState.LAUNCHING)
    assert world.of("backup", LaunchState.MISSED)[0].count == 10


def test_catchup_none_still_runs_a_slot_delayed_by_a_short_failover() -> None:
    world = World()
    core = leader(world, Job(catchup="none"))
    world.commit(core.tick(T0 + minutes(1) + seconds(5)))
    assert len(world.of("backup", LaunchState.LAUNCHING)) == 1


def test_after_an_outage_catchup_all_runs_every_slot_within_the_deadline() -> None:
    world = World()
    core = leader(world, Job(catchup="all", concurrency="allow", starting_deadline=330))
    world.commit(core.tick(T0 + minutes(10) + seconds(1)))
    assert [r.slot for r in world.of("backup", LaunchState.LAUNCHING)] == [
        T0 + minutes(n) for n in range(5, 11)]
    missed = world.of("backup", LaunchState.MISSED)
    assert len(missed) == 1 and missed[0].count == 4 and "deadline" in missed[0].reason


def test_a_paused_job_skips_its_slots_and_does_not_catch_them_up_on_resume() -> None:
    world = World()
    job = Job(paused=True)
    core = leader(world, job)
    assert core.next_wakeup() == T0 + minutes(1)
    world.commit(core.tick(T0 + minutes(1)))
    world.commit(core.tick(T0 + minutes(2)))
    world.commit(core.set_job(job.but(paused=False), None, T0 + minutes(5) + seconds(1)))
    world.commit(core.tick(T0 + minutes(5) + seconds(1)))
    skipped = world.of("backup", LaunchState.SKIPPED)
    assert len(skipped) == 1 and skipped[0].count == 5 and skipped[0].reason == \
        "the job is paused"
    assert not world.of("backup", LaunchState.LAUNCHING)
    world.commit(core.tick(T0 + minutes(6)))
    assert [r.slot for r in world.of("backup", LaunchState.LAUNCHING)] == [T0 + minutes(6)]


def test_a_paused_job_wakes_the_leader_once_every_few_seconds_not_at_every_slot() -> None:
    world = World()
    core = leader(world, Job(schedule="* * * * * *", paused=True))
    every = PAUSED_ACCOUNTING_INTERVAL.total_seconds()
    assert core.next_wakeup() == T0 + seconds(every)
    world.commit(core.tick(T0 + seconds(every)))
    [skipped] = world.of("backup")
    assert skipped.count == every and skipped.cause is Cause.PAUSED
    assert core.next_wakeup() == T0 + seconds(2 * every)


def test_a_failed_run_is_retried_with_backoff_under_the_same_launch_id() -> None:
    world = World()
    core = leader(world, Job(schedule="0 * * * *", retries=2, retry_backoff=10))
    world.commit(core.tick(T0 + minutes(60)))
    launch_id = "backup@2026-11-24T07:00:00Z"
    end = T0 + minutes(61)
    world.commit(core.run_ended(launch_id, LaunchState.FAILED, end, exit_code=3))
    record = world.records[launch_id]
    assert record.state is LaunchState.RETRYING and record.retry_at == end + seconds(10)
    assert core.next_wakeup() == end + seconds(10)
    plan = world.commit(core.tick(end + seconds(10)))
    assert [r.run_id for r in plan.starts] == [f"{launch_id}~2"]
    end2 = end + seconds(20)
    world.commit(core.run_ended(launch_id, LaunchState.TIMED_OUT, end2))
    assert world.records[launch_id].retry_at == end2 + seconds(20)
    world.commit(core.tick(end2 + seconds(20)))
    world.commit(core.run_ended(launch_id, LaunchState.FAILED, end2 + seconds(30),
                                exit_code=1))
    final = world.records[launch_id]
    assert final.state is LaunchState.FAILED and final.attempt == 3
    assert world.started == [launch_id, f"{launch_id}~2", f"{launch_id}~3"]
    # Each earlier attempt stays on the record with its own outcome and times.
    assert [(a.attempt, a.run_id, a.state, a.exit_code, a.ended_at) for a in final.attempts] == [
        (1, launch_id, LaunchState.FAILED, 3, end),
        (2, f"{launch_id}~2", LaunchState.TIMED_OUT, None, end2)]
    assert (final.exit_code, final.ended_at) == (1, end2 + seconds(30))


def test_a_launch_retried_without_end_keeps_only_its_newest_attempts() -> None:
    world = World()
    core = leader(world, Job(schedule="0 * * * *", retries=MAX_ATTEMPTS_KEPT + 5,
                             retry_backoff=1))
    world.commit(core.tick(T0 + minutes(60)))
    launch_id = "backup@2026-11-24T07:00:00Z"
    now = T0 + minutes(60)
    for _ in range(MAX_ATTEMPTS_KEPT + 3):
        now += seconds(1)
        world.commit(core.run_ended(launch_id, LaunchState.FAILED, now, exit_code=1))
        now += seconds(3600)
        world.commit(core.tick(now))
    record = world.records[launch_id]
    assert record.attempt == MAX_ATTEMPTS_KEPT + 4
    assert [a.attempt for a in record.attempts] == list(range(4, MAX_ATTEMPTS_KEPT + 4))


def test_a_manual_run_has_its_own_id_and_obeys_the_overlap_policy() -> None:
    world = World()
    core = leader(world, Job(schedule="0 0 1 1 *"))
    plan = world.commit(core.trigger("backup", "backup@manual-1", T0))
    assert plan.starts[0].kind is LaunchKind.MANUAL and plan.starts[0].slot is None
    world.commit(core.trigger("backup", "backup@manual-2", T0 + seconds(1)))
    second = world.records["backup@manual-2"]
    assert second.state is LaunchState.SKIPPED and "backup@manual-1" in second.reason


def test_a_trigger_for_an_unknown_job_decides_nothing() -> None:
    assert not leader(World()).trigger("nope", "nope@manual-1", T0)


def test_removing_a_job_drops_its_queued_slot_but_follows_its_live_run_to_the_end() -> None:
    world = World()
    core = leader(world, Job(concurrency="queue"))
    world.commit(core.tick(T0 + minutes(1)))
    world.commit(core.tick(T0 + minutes(2)))
    world.commit(core.remove_job("backup", T0 + minutes(2.5)))
    assert world.records["backup@2026-11-24T06:02:00Z"].state is LaunchState.SKIPPED
    plan = world.commit(core.run_ended("backup@2026-11-24T06:01:00Z", LaunchState.SUCCEEDED,
                                       T0 + minutes(3), exit_code=0))
    assert world.records["backup@2026-11-24T06:01:00Z"].state is LaunchState.SUCCEEDED
    assert not plan.starts
    assert core.next_wakeup() is None


def test_a_new_leader_continues_the_span_the_old_one_left() -> None:
    world = World()
    job = Job()
    core = leader(world, job)
    world.commit(core.tick(T0 + minutes(1)))
    world.commit(core.tick(T0 + minutes(2)))
    core = world.takeover([job], T0 + minutes(2.5))
    world.commit(core.tick(T0 + minutes(3)))
    skipped = world.of("backup", LaunchState.SKIPPED)
    assert len(skipped) == 1 and skipped[0].count == 2


def test_a_new_leader_never_relaunches_a_slot_the_old_one_committed() -> None:
    world = World()
    job = Job(concurrency="allow")
    core = leader(world, job)
    world.commit(core.tick(T0 + minutes(1)))
    core = world.takeover([job], T0 + minutes(1.5))
    assert not world.commit(core.tick(T0 + minutes(1.5))).starts
    world.commit(core.tick(T0 + minutes(2)))
    assert world.started == ["backup@2026-11-24T06:01:00Z", "backup@2026-11-24T06:02:00Z"]


def test_a_job_with_a_dst_gap_slot_launches_once_at_the_shifted_instant() -> None:
    world = World()
    start = datetime.fromisoformat("2026-03-29T00:00:00+00:00")
    core = leader(world, Job(schedule="30 2 * * *", timezone="Europe/Amsterdam"), at=start)
    wake = core.next_wakeup()
    assert wake == datetime.fromisoformat("2026-03-29T01:00:00+00:00")  # 03:00 CEST
    assert wake is not None
    plan = world.commit(core.tick(wake))
    assert [r.launch_id for r in plan.starts] == ["backup@2026-03-29T01:00:00Z"]


@pytest.mark.parametrize("deadline", [60.0, None])
def test_a_queued_slot_past_its_deadline_is_missed_instead_of_run(
        deadline: float | None) -> None:
    world = World()
    core = leader(world, Job(concurrency="queue", starting_deadline=deadline))
    world.commit(core.tick(T0 + minutes(1)))
    world.commit(core.tick(T0 + minutes(2)))
    plan = world.commit(core.run_ended("backup@2026-11-24T06:01:00Z", LaunchState.SUCCEEDED,
                                       T0 + minutes(2.5), exit_code=0))
    assert plan.starts  # within a minute: it runs
    world.commit(core.tick(T0 + minutes(3)))
    plan = world.commit(core.run_ended("backup@2026-11-24T06:02:00Z", LaunchState.SUCCEEDED,
                                       T0 + minutes(10), exit_code=0))
    queued = world.records["backup@2026-11-24T06:03:00Z"]
    if deadline is None:
        assert queued.state is LaunchState.LAUNCHING
    else:
        assert queued.state is LaunchState.MISSED and not plan.starts


def test_after_an_outage_catchup_all_runs_every_late_slot_one_after_another() -> None:
    for concurrency in ("forbid", "queue"):
        world = World()
        core = leader(world, Job(schedule="*/5 * * * * *", catchup="all",
                                 concurrency=concurrency, starting_deadline=600))
        now = T0 + seconds(31)
        world.commit(core.tick(now))
        slots = [T0 + seconds(n) for n in range(5, 31, 5)]
        assert [r.slot for r in world.of("backup", LaunchState.LAUNCHING)] == slots[:1]
        assert [r.slot for r in world.of("backup", LaunchState.QUEUED)] == slots[1:]
        ran = [slots[0]]
        for _ in slots[1:]:
            now += seconds(1)
            [current] = world.of("backup", LaunchState.LAUNCHING)
            world.commit(core.run_ended(current.launch_id, LaunchState.SUCCEEDED, now))
            [following] = world.of("backup", LaunchState.LAUNCHING)
            ran.append(following.slot)
        assert ran == slots, concurrency
        assert not world.of("backup", LaunchState.SKIPPED)


def test_catchup_last_runs_the_latest_of_two_slots_due_at_once_within_the_window() -> None:
    world = World()
    core = leader(world, Job(schedule="*/5 * * * * *"))
    world.commit(core.tick(T0 + seconds(11)))
    [launched] = world.of("backup", LaunchState.LAUNCHING)
    assert launched.slot == T0 + seconds(10)
    [missed] = world.of("backup", LaunchState.MISSED)
    assert missed.slot == T0 + seconds(5) and "later slot runs instead" in missed.reason
