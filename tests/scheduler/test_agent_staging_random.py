"""Staging on worker agents over random runs: time passing, workers leaving and
coming back, the job paused, resumed and edited, leaders taking over from what
the (simulated) store holds.

Workers are simulated as the protocol has them (``distcron.worker``): a plain
assignment starts at once on a registered worker; a staged one (``release_by``)
is held by the worker that claimed it and starts once a release mark names it,
even if that worker has not yet seen its assignment deleted (a watch may lag),
or the leader counts it gone while it still runs. Checked: no slot starts
twice, and none before its slot.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from distcron.executors.base import RunState, RunStatus
from distcron.jobs import JobSpec, build_spec
from distcron.scheduler.decision import Decision
from distcron.scheduler.inputs import Input, JobChanged, Reported, WorkersChanged
from distcron.scheduler.policy import WORKER_GRACE
from distcron.scheduler.records import LaunchRecord, launch_id_of
from distcron.scheduler.rounds import LeaderRounds
from distcron.store.layout import Cursor
from tests.scheduler.world import T0, Worker, seconds

LEAD = WORKER_GRACE + seconds(5)  # the grace of a gone worker ends before the slot
WORKERS = ("w1", "w2")


def _spec(paused: bool, version: int) -> JobSpec:
    return build_spec({"name": "tick", "schedule": "*/10 * * * * *", "command": f"v{version}",
                       "executor": "agent", "concurrency": "allow", "paused": paused})


@dataclass
class Store:
    records: dict[str, LaunchRecord] = field(default_factory=dict)
    cursor: Cursor = field(default_factory=lambda: Cursor(T0))
    assignments: dict[tuple[str, str], datetime | None] = field(default_factory=dict)
    marks: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def commit(self, decision: Decision) -> None:
        self.records.update(decision.records)
        if "tick" in decision.cursors:
            self.cursor = decision.cursors["tick"]
        for start in decision.assignments:
            assert start.record.worker is not None
            self.assignments[(start.record.worker, start.request.launch_id)] = start.release_by
        for run in decision.cleanups:
            self.assignments.pop((run.worker, run.run_id), None)
        self.marks.update(decision.release_marks)
        for mark in decision.release_cleanups:
            self.marks.pop(mark, None)


@dataclass
class Sim:
    store: Store
    rounds: LeaderRounds
    now: datetime
    fence: int = 7
    up: set[str] = field(default_factory=lambda: set(WORKERS))
    paused: bool = False
    version: int = 0
    started: dict[str, list[str]] = field(default_factory=dict)  # run id -> workers
    reported: set[str] = field(default_factory=set)
    # The staged launches each worker holds: it learns of new ones at once, of
    # deleted ones only when it syncs (a watch can lag as long as it likes).
    held: dict[str, set[str]] = field(default_factory=lambda: {w: set() for w in WORKERS})

    def decide(self, inputs: list[Input]) -> None:
        decision = self.rounds.decide(inputs, self.now)
        for mark in decision.release_marks.values():
            for launch_id in mark:
                slot = self.store.records[launch_id].slot
                assert slot is not None and slot <= self.now, "released before its slot"
        self.store.commit(decision)

    def workers(self) -> WorkersChanged:
        return WorkersChanged({w: Worker(w, slots=2) for w in sorted(self.up)})

    def advance(self, by: int) -> None:
        end = self.now + seconds(by)
        while (wake := self.rounds.next_wakeup()) is not None and wake <= end:
            self.now = max(self.now, wake)
            self.decide([])
        self.now = end
        self.decide([])

    def takeover(self) -> None:
        self.fence += 1
        rounds = LeaderRounds(self.fence, f"r{self.fence}", "here", stage_lead=LEAD,
                              staging_executors=frozenset({"local", "agent"}))
        rounds.load([JobChanged(_spec(self.paused, self.version), self.store.cursor)],
                    self.now)
        rounds.restore([r for r in self.store.records.values() if r.state.live], self.now)
        rounds.load_marks(dict(self.store.marks), self.now)
        self.rounds = rounds
        self.decide([self.workers()])

    def sync(self, worker: str) -> None:
        self.held[worker] = {run_id for (w, run_id), release_by in self.store.assignments.items()
                             if w == worker and release_by is not None}

    def work(self) -> None:
        """Each registered worker starts what the protocol lets it, and reports it:
        a plain assignment at once, a staged launch it holds once a mark names it."""
        named = {launch_id for mark in self.store.marks.values() for launch_id in mark}
        due: list[tuple[str, str]] = []
        for (worker, run_id), release_by in list(self.store.assignments.items()):
            if worker not in self.up:
                continue
            if release_by is None:
                due.append((worker, run_id))
            else:
                self.held[worker].add(run_id)
        # Even a worker the leader counts gone (its lease lapsed, the process
        # alive) releases what it holds: a release needs no lease, only a mark.
        due += [(worker, run_id) for worker in WORKERS
                for run_id in sorted(self.held[worker]) if launch_id_of(run_id) in named]
        reports: list[Input] = []
        for worker, run_id in due:
            if worker in self.started.get(run_id, []):
                continue
            self.started.setdefault(run_id, []).append(worker)
            reports.append(Reported(run_id, worker, RunStatus(
                run_id, RunState.RUNNING, pid=1, started_at=self.now)))
        if reports:
            self.decide(reports)
        for run_id, workers in self.started.items():
            assert len(workers) == 1, f"{run_id} started on {workers}"
            slot = self.store.records[launch_id_of(run_id)].slot
            assert slot is None or slot <= self.now, f"{run_id} started before its slot"

    def finish(self) -> None:
        ended = [Reported(run_id, workers[0], RunStatus(run_id, RunState.SUCCEEDED,
                                                         exit_code=0, started_at=self.now))
                 for run_id, workers in self.started.items() if run_id not in self.reported]
        self.reported.update(r.run_id for r in ended)
        if ended:
            self.decide(ended)


steps = st.lists(st.one_of(
    st.tuples(st.just("advance"), st.integers(1, 12)),
    st.tuples(st.just("work"), st.just(0)),
    st.tuples(st.just("finish"), st.just(0)),
    st.tuples(st.just("takeover"), st.just(0)),
    st.tuples(st.just("toggle_worker"), st.integers(0, 1)),
    st.tuples(st.just("sync"), st.integers(0, 1)),
    st.tuples(st.just("toggle_pause"), st.just(0)),
    st.tuples(st.just("edit"), st.just(0)),
), max_size=40)


@settings(max_examples=400, deadline=None)
@given(steps=steps)
def test_a_staged_slot_starts_once_at_or_after_its_slot_wherever_it_ends_up(
        steps: list[tuple[str, int]]) -> None:
    store = Store()
    rounds = LeaderRounds(7, "r7", "here", stage_lead=LEAD,
                          staging_executors=frozenset({"local", "agent"}))
    rounds.load([JobChanged(_spec(False, 0), Cursor(T0))], T0)
    sim = Sim(store, rounds, T0)
    sim.decide([sim.workers()])
    for kind, arg in steps:
        if kind == "advance":
            sim.advance(arg)
        elif kind == "work":
            sim.work()
        elif kind == "finish":
            sim.finish()
        elif kind == "takeover":
            sim.takeover()
        elif kind == "sync":
            sim.sync(WORKERS[arg])
        elif kind == "toggle_worker":
            sim.up ^= {WORKERS[arg]}
            sim.decide([sim.workers()])
        elif kind == "toggle_pause":
            sim.paused = not sim.paused
            sim.decide([JobChanged(_spec(sim.paused, sim.version), None)])
        else:
            sim.version += 1
            sim.decide([JobChanged(_spec(sim.paused, sim.version), None)])
    sim.work()
    # Every launch that started is one slot's, on one worker (checked at each step too).
    assert all(len(workers) == 1 for workers in sim.started.values())
