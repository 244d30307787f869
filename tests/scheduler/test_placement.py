"""Launches on worker agents: the least busy eligible worker, waiting while none
can take a launch, and runs lost with their worker."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from distcron.scheduler.core import SchedulerCore
from distcron.scheduler.records import LaunchState
from distcron.store.layout import Cursor
from tests.scheduler.world import T0, Job, World, minutes, seconds


@dataclass(frozen=True)
class Worker:
    id: str
    slots: int = 2
    tags: tuple[str, ...] = ()
    load: float = 0.0


def leader(world: World, *jobs: Job, workers: tuple[Worker, ...] = ()) -> SchedulerCore:
    core = SchedulerCore(world.fence, "r1", "here")
    world.commit(core.set_workers({w.id: w for w in workers}, T0))
    for job in jobs:
        world.commit(core.set_job(job, Cursor(T0), T0))
    return core


def test_a_launch_goes_to_the_least_busy_worker_whose_tags_fit() -> None:
    world = World()
    job = Job(executor="agent", concurrency="allow", tags=("gpu",))
    core = leader(world, job, workers=(Worker("plain"), Worker("busy", tags=("gpu",), load=0.9),
                                       Worker("idle", tags=("gpu", "ssd"), load=0.1)))
    plan = world.commit(core.tick(T0 + minutes(1)))
    assert [(r.worker, r.location) for r in plan.starts] == [("idle", None)]
    # "idle" now has one of its two slots in use (0.5 + 0.1 < 0.9): still the choice.
    plan = world.commit(core.tick(T0 + minutes(2)))
    assert [r.worker for r in plan.starts] == ["idle"]
    plan = world.commit(core.tick(T0 + minutes(3)))
    assert [r.worker for r in plan.starts] == ["busy"]


def test_a_launch_waits_for_a_worker_and_goes_to_the_first_that_registers() -> None:
    world = World()
    core = leader(world, Job(executor="agent"))
    plan = world.commit(core.tick(T0 + minutes(1)))
    assert not plan.starts
    waiting = world.records["backup@2026-11-24T06:01:00Z"]
    assert waiting.state is LaunchState.QUEUED and waiting.reason == "waiting for a worker"
    plan = world.commit(core.set_workers({"w1": Worker("w1")}, T0 + minutes(1) + seconds(5)))
    assert [(r.launch_id, r.worker) for r in plan.starts] == [
        ("backup@2026-11-24T06:01:00Z", "w1")]
    assert world.records["backup@2026-11-24T06:01:00Z"].state is LaunchState.LAUNCHING


def test_a_launch_no_worker_takes_is_missed_at_its_starting_deadline() -> None:
    world = World()
    core = leader(world, Job(executor="agent", starting_deadline=30, tags=("x",)),
                  workers=(Worker("untagged"),))
    world.commit(core.tick(T0 + minutes(1)))
    while (wake := core.next_wakeup()) is not None and wake <= T0 + minutes(1) + seconds(31):
        world.commit(core.tick(wake))
    record = world.records["backup@2026-11-24T06:01:00Z"]
    assert record.state is LaunchState.MISSED
    assert record.reason == "no worker could take it before its starting deadline"


def test_runs_on_a_vanished_worker_are_lost_and_the_next_slot_goes_elsewhere() -> None:
    world = World()
    a, b = Worker("a", load=0.0), Worker("b", load=0.5)
    core = leader(world, Job(executor="agent"), workers=(a, b))
    world.commit(core.tick(T0 + minutes(1)))
    launch_id = "backup@2026-11-24T06:01:00Z"
    world.commit(core.run_started(launch_id, T0 + minutes(1), worker="a"))
    world.commit(core.set_workers({"b": b}, T0 + minutes(1.5)))
    assert world.records[launch_id].state is LaunchState.RUNNING  # it may be restarting
    world.commit(core.tick(T0 + minutes(1.5) + seconds(10)))
    lost = world.records[launch_id]
    assert lost.state is LaunchState.LOST
    assert lost.reason == "worker a vanished at 2026-11-24T06:01:30+00:00"
    plan = world.commit(core.tick(T0 + minutes(2)))
    assert [r.worker for r in plan.starts] == ["b"]


def test_a_worker_that_comes_back_within_the_grace_keeps_its_runs() -> None:
    world = World()
    a = Worker("a")
    core = leader(world, Job(executor="agent"), workers=(a,))
    world.commit(core.tick(T0 + minutes(1)))
    launch_id = "backup@2026-11-24T06:01:00Z"
    world.commit(core.set_workers({}, T0 + minutes(1) + seconds(1)))
    world.commit(core.set_workers({"a": a}, T0 + minutes(1) + seconds(4)))
    world.commit(core.tick(T0 + minutes(1) + seconds(30)))
    assert world.records[launch_id].state is LaunchState.LAUNCHING


@settings(max_examples=300, deadline=None)
@given(steps=st.lists(st.tuples(
    st.sampled_from(["tick", "start", "end", "workers", "remove", "trigger"]),
    st.integers(0, 3)), max_size=40))
def test_the_count_of_launches_per_worker_is_what_the_live_records_say(
        steps: list[tuple[str, int]]) -> None:
    """Placement reads a count kept as records change, not a recount: check it."""
    world = World()
    jobs = [Job(name=f"j{n}", executor="agent", concurrency="allow", retries=1) for n in range(3)]
    pool = {w.id: w for w in (Worker("w0"), Worker("w1", slots=3))}
    core = leader(world, *jobs, workers=tuple(pool.values()))
    now = T0
    for kind, arg in steps:
        now += seconds(20)
        if kind == "tick":
            world.commit(core.tick(now))
        elif kind in {"start", "end"}:
            live = [r for r in core.live_records() if r.state in (
                LaunchState.LAUNCHING, LaunchState.RUNNING)]
            if live:
                record = live[arg % len(live)]
                world.commit(core.run_started(record.launch_id, now) if kind == "start"
                             else core.run_ended(record.launch_id, LaunchState.FAILED, now))
        elif kind == "workers":
            present = {k: v for n, (k, v) in enumerate(pool.items()) if n != arg % 3}
            world.commit(core.set_workers(present, now))
        elif kind == "remove":
            world.commit(core.remove_job(jobs[arg % 3].name, now))
        else:
            world.commit(core.trigger(jobs[arg % 3].name, f"{jobs[arg % 3].name}@m-{now}", now))
        recount = Counter(r.worker for r in core.live_records()
                          if r.executor == "agent" and r.worker is not None
                          and r.state in (LaunchState.LAUNCHING, LaunchState.RUNNING))
        assert core._ledger.busy == recount
