"""Staging: a launch committed up to ``lead`` ahead of its slot, prepared by its
executor, and released at the slot.

A job's next slot is staged only when the decision cannot change by the slot:
the job's executor stages, it is not paused or quarantined, it has no staged
launch already, and nothing of it is live (or it allows overlap). Its intent is
then committed at once (``staged`` set, the cursor at the slot), the executor
prepares it, and at the slot the leader commits a release mark (``released/``)
under its fence and only then releases it. A leader that cannot write the mark
releases nothing; a next leader knows that a staged launch without a mark never
started.

Before its slot, a staged launch follows its job: paused or removed, it is
recorded skipped and let go; edited, it is staged again with the new spec, or
skipped if its slot is no longer one of the job's.

A launch on a worker agent is staged on a worker chosen then (one that
stages, with a slot free), and stays there: its assignment is committed with
the intent, the worker claims it and prepares it, and starts it when it sees
the release mark that names it. No worker free to stage it: it is not staged,
and is placed at its slot as any launch. Its worker gone (not registered) at
the slot: it is placed again then, without a mark. An edit that changes its
tags or executor skips it (its worker was chosen for the old ones).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta

from distcron.cron import Schedule
from distcron.scheduler.ledger import Job, Ledger
from distcron.scheduler.placement import Placement
from distcron.scheduler.plan import Plan
from distcron.scheduler.policy import MAX_STAGED, JobPolicy
from distcron.scheduler.records import Cause, LaunchRecord, LaunchState, launch_id_for
from distcron.scheduler.wakeups import WakeKind, Wakeup, Wakeups
from distcron.store.layout import Cursor


class Staging:
    def __init__(self, ledger: Ledger, wakeups: Wakeups, placement: Placement,
                 lead: timedelta, executors: frozenset[str], limit: int = MAX_STAGED) -> None:
        self._ledger = ledger
        self._wakeups = wakeups
        self._placement = placement
        self.lead = lead
        self._executors = executors  # the kinds of executor that stage here
        self._limit = limit
        self._count = 0

    def _worker_for(self, spec: JobPolicy) -> str | None:
        """A worker agent to stage the job's launch on, if one can."""
        return self._placement.choose(spec, staging=True)

    def can_stage(self, job: Job) -> bool:
        spec = job.spec
        return (self.lead > timedelta(0) and spec.executor in self._executors
                and not spec.paused and not job.held and job.staged is None
                and self._count < self._limit
                and (spec.concurrency == "allow" or not job.live))

    def has_place(self, job: Job) -> bool:
        """Whether the job's launch has somewhere to be staged now: its
        executor here, or a worker agent that stages with a slot free."""
        return job.spec.executor != "agent" or self._worker_for(job.spec) is not None

    def stage_next(self, job: Job, now: datetime, plan: Plan) -> None:
        """Stage the job's next slot if it falls within the lead (see the module)."""
        if not self.can_stage(job):
            return
        slot = job.schedule.next(job.cursor).astimezone(UTC)
        if not now < slot <= now + self.lead or not self.has_place(job):
            return
        record = self._ledger.new_record(job, slot, launch_id_for(job.spec.name, slot),
                                         LaunchState.LAUNCHING, now)
        update: dict[str, object] = {"staged": True}
        if job.spec.executor == "agent":
            update["worker"] = self._worker_for(job.spec)
        record = record.model_copy(update=update)
        self._ledger.add(job, record)
        job.gap = None
        job.cursor = slot
        plan.write(record, create=True)
        plan.cursors[job.spec.name] = Cursor(slot)
        self._hold(job, record, plan)

    def adopt(self, job: Job, record: LaunchRecord, now: datetime, plan: Plan, *,
              prepare: bool) -> None:
        """A staged launch a new leader found still to release: tracked again, and
        prepared again by this replica's executor when ``prepare``."""
        if job.staged == record.launch_id:
            return
        if prepare:
            record = record.model_copy(update={
                "fence": self._ledger.fence, "replica": self._ledger.replica,
                "location": self._ledger.location(record.executor)})
            self._ledger.replace(record)
            plan.write(record)
        self._count += 1
        job.staged = record.launch_id
        self._wakeups.push(record.slot or now, WakeKind.RELEASE, record.launch_id)
        if prepare:
            plan.stages.append(record)

    def holds(self, record: LaunchRecord) -> bool:
        """Whether the launch is staged and not released yet."""
        job = self._ledger.jobs.get(record.job)
        return job is not None and job.staged == record.launch_id

    def release(self, launch_id: str, now: datetime, plan: Plan) -> Job | None:
        """The staged launch's slot has come: release it. Returns its job.

        One staged on a worker agent that is not registered any more is placed
        again instead (elsewhere, or waiting for a worker): no mark names it,
        so its old worker, if it comes back, never starts it."""
        record = self._ledger.find(launch_id)
        job = self._ledger.jobs.get(record.job) if record is not None else None
        if record is None or job is None or job.staged != launch_id:
            return None
        job.staged = None
        self._count -= 1
        if record.worker is not None and record.worker not in self._placement.workers:
            plan.unstages.append(record)
            moved = record.model_copy(update={"staged": False, "worker": None})
            self._ledger.replace(moved)
            self._placement.dispatch(moved, now, plan)
        else:
            plan.releases.append(record)
        return job

    def edited(self, job: Job, spec: JobPolicy, schedule: Schedule | None, now: datetime,
               plan: Plan) -> None:
        """The job changed before its staged slot (``schedule`` None: it cannot be read)."""
        record = self._let_go(job, plan)
        if record is None:
            return
        assert record.slot is not None
        if spec.paused:
            self._ledger.end(record, LaunchState.SKIPPED, Cause.PAUSED,
                             "the job was paused before its slot", now, plan)
        elif schedule is None or schedule.next(record.slot - _TICK) != record.slot:
            self._ledger.end(record, LaunchState.SKIPPED, Cause.EDITED,
                             "the job's schedule changed before its slot", now, plan)
        elif "agent" in (record.executor, spec.executor) and (
                spec.executor != record.executor or spec.tags != job.spec.tags):
            self._ledger.end(record, LaunchState.SKIPPED, Cause.EDITED,
                             "the job's executor or tags changed before its slot, after "
                             "a worker was chosen for it", now, plan)
        else:
            again = record.model_copy(update={"executor": spec.executor,
                                              "location": self._ledger.location(spec.executor)})
            self._ledger.replace(again)
            plan.write(again)
            self._hold(job, again, plan)

    def removed(self, job: Job, now: datetime, plan: Plan) -> None:
        record = self._let_go(job, plan)
        if record is not None:
            self._ledger.end(record, LaunchState.SKIPPED, Cause.JOB_REMOVED,
                             "the job was removed before its slot", now, plan)

    def stale(self, entry: Wakeup) -> bool:
        record = self._ledger.find(entry.key)
        job = self._ledger.jobs.get(record.job) if record is not None else None
        return job is None or job.staged != entry.key

    def _hold(self, job: Job, record: LaunchRecord, plan: Plan) -> None:
        assert record.slot is not None
        self._count += 1
        job.staged = record.launch_id
        self._wakeups.push(record.slot, WakeKind.RELEASE, record.launch_id)
        plan.stages.append(record)

    def _let_go(self, job: Job, plan: Plan) -> LaunchRecord | None:
        if job.staged is None:
            return None
        record = job.live.get(job.staged)
        job.staged = None
        self._count -= 1
        if record is not None:
            plan.unstages.append(record)
        return record


_TICK = timedelta(microseconds=1)


class ReleaseMarks:
    """Which staged launches each release mark (``released/<key>``) lists and
    are still launching; a mark is deleted once none of its launches is."""

    def __init__(self, fence: int) -> None:
        self._fence = fence
        self._seq = itertools.count(1)
        self._waiting: dict[str, set[str]] = {}  # mark -> launch ids still launching
        self._mark_of: dict[str, str] = {}  # launch id -> its mark
        self._found: set[str] = set()  # every launch id the marks found at takeover name
        self._unreadable = False

    def load(self, marks: Mapping[str, Iterable[str] | None],
             launching: Callable[[str], bool]) -> list[str]:
        """The marks a new leader found (None: unreadable); returns those it can
        delete already."""
        idle = []
        for key, launch_ids in marks.items():
            if launch_ids is None:
                # Fail closed: it may have named any launch; each is then asked
                # about, never staged again blindly. It stays for a later leader.
                self._unreadable = True
                continue
            ids = set(launch_ids)
            self._found |= ids
            waiting = {i for i in ids if launching(i)}
            if waiting:
                self._waiting[key] = waiting
                self._mark_of.update(dict.fromkeys(waiting, key))
            else:
                idle.append(key)
        return idle

    def released_before(self, launch_id: str) -> bool:
        """Whether an earlier leader committed (so may have made) a release of it."""
        return self._unreadable or launch_id in self._found

    def mark(self, launch_ids: Iterable[str]) -> tuple[str, tuple[str, ...]]:
        key = f"{self._fence}-{next(self._seq)}"
        ids = tuple(launch_ids)
        self._waiting[key] = set(ids)
        self._mark_of.update(dict.fromkeys(ids, key))
        return key, ids

    def settle(self, records: Iterable[LaunchRecord]) -> list[str]:
        """Marks none of whose launches is launching any more, given the records
        just written."""
        done = []
        for record in records:
            key = self._mark_of.get(record.launch_id)
            if key is None or record.state is LaunchState.LAUNCHING:
                continue
            del self._mark_of[record.launch_id]
            waiting = self._waiting[key]
            waiting.discard(record.launch_id)
            if not waiting:
                del self._waiting[key]
                done.append(key)
        return done
