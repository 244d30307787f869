"""A simulated world for the scheduler core: a store that enforces the guards
the real one does, and an executor that runs nothing but remembers."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from distcron.scheduler.core import SchedulerCore
from distcron.scheduler.plan import Plan
from distcron.scheduler.records import LaunchRecord, LaunchState
from distcron.store.layout import Cursor

T0 = datetime(2026, 11, 24, 6, 0, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Worker:
    """A registered worker agent, as the scheduler sees one."""

    id: str = "w1"
    slots: int = 4
    tags: tuple[str, ...] = ()
    load: float = 0.0
    stages: bool = True


@dataclass(frozen=True)
class Job:
    """A job as the core sees it (the JobPolicy protocol), described in a line."""

    name: str = "backup"
    schedule: str = "* * * * *"
    timezone: str = "UTC"
    concurrency: str = "forbid"
    catchup: str = "last"
    starting_deadline: float | None = 3600.0
    retries: int = 0
    retry_backoff: float = 10.0
    paused: bool = False
    idempotent: bool = False
    executor: str = "local"
    tags: tuple[str, ...] = ()

    def but(self, **changes: object) -> Job:
        return replace(self, **changes)  # type: ignore[arg-type]


class DoubleLaunch(AssertionError):
    pass


@dataclass
class World:
    """The store's view of launches, kept as the runtime would commit plans."""

    records: dict[str, LaunchRecord] = field(default_factory=dict)
    cursors: dict[str, Cursor] = field(default_factory=dict)
    started: list[str] = field(default_factory=list)  # run ids handed to the executor
    stopped: list[str] = field(default_factory=list)
    staged: set[str] = field(default_factory=set)  # run ids prepared, not yet released
    fence: int = 1
    stage_lead: timedelta = timedelta(0)  # > 0: leaders stage "local" launches

    def commit(self, plan: Plan) -> Plan:
        for launch_id, record in plan.records.items():
            if launch_id in plan.created and launch_id in self.records:
                raise DoubleLaunch(f"{launch_id} created twice")
            assert launch_id in plan.created or launch_id in self.records, launch_id
            self.records[launch_id] = record
        self.cursors.update(plan.cursors)
        for record in plan.unstages:
            self.staged.discard(record.run_id or "")
        for record in plan.stages:
            assert record.run_id is not None and record.staged
            self.staged.add(record.run_id)
        for record in [*plan.starts, *plan.releases]:
            assert record.run_id is not None
            if record.run_id in self.started:
                raise DoubleLaunch(f"run {record.run_id} started twice")
            self.started.append(record.run_id)
            self.staged.discard(record.run_id)
        self.stopped += [r.launch_id for r in plan.stops]
        return plan

    def new_core(self) -> SchedulerCore:
        return SchedulerCore(self.fence, f"replica-{self.fence}", "here",
                             stage_lead=self.stage_lead,
                             staging_executors=frozenset({"local"}))

    def of(self, job: str, state: LaunchState | None = None) -> list[LaunchRecord]:
        found = [r for r in self.records.values() if r.job == job]
        found.sort(key=lambda r: (r.slot or T0, r.launch_id))
        return [r for r in found if state is None or r.state is state]

    def takeover(self, jobs: list[Job], now: datetime) -> SchedulerCore:
        """A new leader: a new core built only from what the store holds."""
        self.fence += 1
        core = self.new_core()
        for job in jobs:
            self.commit(core.set_job(job, self.cursors.get(job.name), now))
        wanted = {c.gap for c in self.cursors.values() if c.gap}
        for record in self.records.values():
            if record.state.live or record.launch_id in wanted:
                core.restore(record, now)
        for record in list(self.records.values()):
            # A staged launch never released is known not to have started (the
            # round learns it from the release marks); one released runs on.
            if (record.staged and record.state is LaunchState.LAUNCHING
                    and record.run_id not in self.started):
                self.commit(core.adopt_staged(record.launch_id, now, prepare=True))
        return core


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


def seconds(n: float) -> timedelta:
    return timedelta(seconds=n)
