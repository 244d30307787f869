"""DESIGN.md's promises, checked over random job sets, runs, edits and outages.

A simulated leader drives the core on a simulated clock; takeovers rebuild the
core from nothing but what the simulated store holds, as a new leader would.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from distcron.cron import parse
from distcron.scheduler.core import SchedulerCore
from distcron.scheduler.plan import Plan
from distcron.scheduler.records import LaunchState
from tests.scheduler.world import T0, Job, World

jobs_strategy = st.lists(
    st.builds(
        Job,
        name=st.sampled_from(["a", "b", "c", "d"]),
        schedule=st.sampled_from(["* * * * *", "*/2 * * * *", "*/7 * * * *",
                                  "*/20 * * * * *", "0 * * * *"]),
        concurrency=st.sampled_from(["forbid", "allow", "replace", "queue"]),
        catchup=st.sampled_from(["none", "last", "all"]),
        starting_deadline=st.sampled_from([None, 30.0, 120.0, 900.0]),
        retries=st.integers(0, 2),
        retry_backoff=st.sampled_from([5.0, 60.0]),
        paused=st.booleans(),
    ),
    min_size=1, max_size=3, unique_by=lambda job: job.name)

steps_strategy = st.lists(
    st.one_of(
        st.tuples(st.just("run"), st.integers(1, 900)),
        st.tuples(st.just("outage"), st.integers(1, 3600)),
        st.tuples(st.just("end"), st.sampled_from(
            [LaunchState.SUCCEEDED, LaunchState.FAILED, LaunchState.TIMED_OUT,
             LaunchState.MISSED])),
        # Its executor (a batch scheduler) holds it pending, then starts it.
        st.tuples(st.just("pending"), st.sampled_from(["Resources", "Priority"])),
        st.tuples(st.just("start"), st.just(0)),
        st.tuples(st.just("takeover"), st.just(0)),
        st.tuples(st.just("toggle_pause"), st.integers(0, 2)),
        st.tuples(st.just("trigger"), st.integers(0, 2)),
    ),
    max_size=30)


@dataclass
class Simulation:
    jobs: dict[str, Job]
    world: World
    core: SchedulerCore
    now: datetime
    triggers: int = 0

    def commit(self, plan: Plan) -> None:
        for record in plan.releases:
            assert record.slot is not None and self.now >= record.slot, "released early"
        for record in [*plan.starts, *plan.releases]:
            job = self.jobs.get(record.job)
            if job is not None and job.concurrency == "forbid":
                # As they stand once this plan is written: a run it ends is not beside.
                current = (plan.records.get(r.launch_id, r) for r in self.world.of(record.job))
                others = [r for r in current
                          if r.active and r.launch_id != record.launch_id]
                assert not others, f"{record.launch_id} started beside {others}"
        self.world.commit(plan)
        for record in plan.starts:
            assert record.intent_at is not None
            assert record.slot is None or record.intent_at >= record.slot, "launched early"

    def run_until(self, until: datetime) -> None:
        """A healthy leader: it wakes at every wake-up it asked for."""
        while (wake := self.core.next_wakeup()) is not None and wake <= until:
            self.now = max(self.now, wake)
            self.commit(self.core.tick(self.now))
        self.now = until
        self.commit(self.core.tick(self.now))

    def step(self, kind: str, arg: object) -> None:
        if kind == "run":
            assert isinstance(arg, int)
            self.run_until(self.now + timedelta(seconds=arg))
        elif kind == "outage":
            assert isinstance(arg, int)
            self.now += timedelta(seconds=arg)
            self.core = self.world.takeover(list(self.jobs.values()), self.now)
        elif kind == "takeover":
            self.core = self.world.takeover(list(self.jobs.values()), self.now)
        elif kind in ("end", "pending", "start"):
            live = [r for r in self.core.live_records()
                    if r.submitted and r.run_id in self.world.started]
            if not live:
                return
            launch_id = live[0].launch_id
            if kind == "end":
                assert isinstance(arg, LaunchState)
                self.commit(self.core.run_ended(launch_id, arg, self.now))
            elif kind == "pending":
                assert isinstance(arg, str)
                self.commit(self.core.run_pending(launch_id, f"pending in Slurm: {arg}"))
            else:
                self.commit(self.core.run_started(launch_id, self.now))
        elif kind == "toggle_pause":
            assert isinstance(arg, int)
            names = sorted(self.jobs)
            name = names[arg % len(names)]
            self.jobs[name] = self.jobs[name].but(paused=not self.jobs[name].paused)
            self.commit(self.core.set_job(self.jobs[name], None, self.now))
        elif kind == "trigger":
            assert isinstance(arg, int)
            names = sorted(self.jobs)
            self.triggers += 1
            name = names[arg % len(names)]
            self.commit(self.core.trigger(name, f"{name}@manual-{self.triggers}", self.now))


def check_every_slot_has_exactly_one_record(sim: Simulation) -> None:
    for name, job in sim.jobs.items():
        cursor = sim.world.cursors[name].slot
        schedule = parse(job.schedule, tz=job.timezone, job=name)
        covered: dict[datetime, int] = {}
        for record in sim.world.of(name):
            if record.slot is None:
                continue
            until = record.until or record.slot
            start = record.slot - timedelta(microseconds=1)
            slots = list(itertools.takewhile(lambda s, u=until: s <= u, schedule.iter(start)))
            assert len(slots) == record.count, record
            for slot in slots:
                covered[slot] = covered.get(slot, 0) + 1
        expected = []
        for slot in schedule.iter(T0):
            if slot > cursor:
                break
            expected.append(slot)
        assert sorted(covered) == expected, name
        assert all(n == 1 for n in covered.values()), name


@settings(max_examples=150, deadline=None)
@given(jobs=jobs_strategy, steps=steps_strategy, staging=st.booleans())
def test_every_slot_ends_as_one_record_and_none_launches_twice(
        jobs: list[Job], steps: list[tuple[str, object]], staging: bool) -> None:
    world = World(stage_lead=timedelta(seconds=5 if staging else 0))
    sim = Simulation({job.name: job for job in jobs}, world, world.new_core(), T0)
    for job in jobs:
        sim.commit(sim.core.set_job(job, None, T0))
    for kind, arg in steps:
        sim.step(kind, arg)
    sim.step("takeover", 0)
    sim.run_until(sim.now + timedelta(seconds=61))
    check_every_slot_has_exactly_one_record(sim)
    for record in world.records.values():
        # Queued for resources only once handed to its executor.
        assert not record.waiting_for_resources or record.run_id in world.started, record
    staged = {world.records[run_id].slot: run_id for run_id in world.staged}
    # Nothing staged is left behind past its slot, nor beyond the lead.
    assert all(sim.now < slot <= sim.now + world.stage_lead for slot in staged if slot)
    for name, job in sim.jobs.items():
        if job.paused:
            continue  # a paused job's slots are accounted for once a minute
        schedule = parse(job.schedule, job=name)
        last = schedule.prev(sim.now + timedelta(microseconds=1))
        cursor = sim.world.cursors[name].slot
        # Up to the last slot due, or the next one if it is staged.
        assert cursor == last or (cursor == schedule.next(last) and cursor in staged), name
