"""The jobs a leader schedules and their live records, as the core tracks them."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from distcron.cron import Schedule
from distcron.scheduler.plan import Plan
from distcron.scheduler.policy import JobPolicy
from distcron.scheduler.records import Cause, LaunchKind, LaunchRecord, LaunchState


@dataclass(slots=True)
class Job:
    spec: JobPolicy
    schedule: Schedule
    cursor: datetime
    live: dict[str, LaunchRecord] = field(default_factory=dict)
    gap: LaunchRecord | None = None  # the skipped/missed span that may still grow
    replacing: dict[str, str] = field(default_factory=dict)  # live id -> id replacing it
    version: int = 0  # wake-ups of older versions are stale
    held: bool = False  # quarantined: no slots until its spec changes
    staged: str | None = None  # its launch committed ahead, waiting for its slot

    def active(self) -> list[LaunchRecord]:
        return [r for r in self.live.values() if r.active]

    def queued(self) -> list[LaunchRecord]:
        """Queued in the core (a launch queued in its executor is active)."""
        return [r for r in self.live.values() if r.waiting]


class Ledger:
    def __init__(self, fence: int, replica: str, local_location: str | None,
                 other_locations: Mapping[str, str] | None = None) -> None:
        self.fence = fence
        self.replica = replica
        # Written into the intent of every local run, so a later leader knows
        # whether its own executor can tell what became of the run.
        self.local_location = local_location
        # Other executors whose runs any leader can ask about (a Slurm cluster).
        self.other_locations = dict(other_locations or {})
        self.jobs: dict[str, Job] = {}
        # Live records of jobs removed while they ran: still tracked to their end.
        self.orphans: dict[str, LaunchRecord] = {}
        # Jobs with live records: a leader of many jobs visits only these.
        self.with_live: set[str] = set()
        # Launches on each worker agent (launching or running): kept as records
        # change, so that placing a launch costs the same however many run.
        self.busy: Counter[str] = Counter()
        # Launches stopped on purpose while their executor had not started them
        # (the job paused or removed): how their end is recorded.
        self.stopping: dict[str, tuple[Cause, str]] = {}

    def live_records(self) -> Iterator[LaunchRecord]:
        for name in list(self.with_live):
            job = self.jobs.get(name)
            if job is not None:
                yield from list(job.live.values())
        yield from list(self.orphans.values())

    def find(self, launch_id: str) -> LaunchRecord | None:
        job = self.jobs.get(launch_id.partition("@")[0])
        if job is not None and launch_id in job.live:
            return job.live[launch_id]
        return self.orphans.get(launch_id)

    def add(self, job: Job, record: LaunchRecord) -> None:
        self._count(job.live.get(record.launch_id), -1)
        job.live[record.launch_id] = record
        self._count(record, 1)
        self.with_live.add(job.spec.name)

    def add_orphan(self, record: LaunchRecord) -> None:
        """A live record whose job is gone: tracked to its end all the same."""
        self._count(self.orphans.get(record.launch_id), -1)
        self.orphans[record.launch_id] = record
        self._count(record, 1)

    def forget(self, name: str) -> None:
        """Drop a job; its live records are tracked to their end all the same."""
        job = self.jobs.pop(name, None)
        self.with_live.discard(name)
        if job is not None:
            self.orphans.update(job.live)  # counted in busy already

    def replace(self, record: LaunchRecord) -> None:
        job = self.jobs.get(record.job)
        if job is not None and record.launch_id in job.live:
            self._count(job.live[record.launch_id], -1)
            job.live[record.launch_id] = record
        elif record.launch_id in self.orphans:
            self._count(self.orphans[record.launch_id], -1)
            self.orphans[record.launch_id] = record
        else:
            return
        self._count(record, 1)

    def _count(self, record: LaunchRecord | None, change: int) -> None:
        if (record is not None and record.executor == "agent" and record.worker is not None
                and record.submitted):
            self.busy[record.worker] += change
            if not self.busy[record.worker]:
                del self.busy[record.worker]

    def end(self, record: LaunchRecord, state: LaunchState, cause: Cause | None,
            reason: str | None, now: datetime, plan: Plan) -> None:
        """The record is final: no longer live, written as ``state``."""
        update: dict[str, object] = {"state": state, "ended_at": record.ended_at or now,
                                     "cause": cause}
        if reason is not None:
            update["reason"] = reason
        ended = record.model_copy(update=update)
        job = self.jobs.get(record.job)
        if job is not None:
            self._count(job.live.pop(record.launch_id, None), -1)
            if not job.live:
                self.with_live.discard(job.spec.name)
        self._count(self.orphans.pop(record.launch_id, None), -1)
        self.stopping.pop(record.launch_id, None)
        plan.write(ended)
        plan.ended.add(ended.launch_id)

    def new_record(self, job: Job, slot: datetime | None, launch_id: str, state: LaunchState,
                   now: datetime, cause: Cause | None = None,
                   reason: str = "") -> LaunchRecord:
        launched = state.launched
        return LaunchRecord(
            launch_id=launch_id, job=job.spec.name, slot=slot,
            kind=LaunchKind.SCHEDULED if slot is not None else LaunchKind.MANUAL,
            state=state, reason=reason, cause=cause, fence=self.fence, replica=self.replica,
            executor=job.spec.executor if launched else None,
            location=self.location(job.spec.executor) if launched else None,
            run_id=launch_id if launched else None, intent_at=now)

    def location(self, executor: str | None) -> str | None:
        if executor == "local":
            return self.local_location
        return None if executor is None else self.other_locations.get(executor)
