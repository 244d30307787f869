"""The leader's round: what it learnt in, one decision out.

Pure, in the spirit of Patroni's ``run_cycle``. :class:`LeaderRounds` holds
what a leader carries from one round to the next (the scheduler core, each
job's launch template, how many records each job has written since its
history was pruned). Each round takes the inputs that arrived since the last
one (:mod:`distcron.scheduler.inputs`) and ``now``, applies them to the core,
ticks it, and returns everything it decided as one
:class:`~distcron.scheduler.decision.Decision`: the launch records and cursors
to write, the writes for worker agents that belong with them (assignments,
stop requests, clean-ups), outputs, consumed triggers, quarantined jobs, and
what to do once that is committed (starts, stops, runs to follow, histories to
prune), with notes saying why, for the log.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from distcron.executors.base import RunState, RunStatus
from distcron.scheduler.core import SchedulerCore
from distcron.scheduler.decision import Decision, Note, Notification, Start, WorkerRun
from distcron.scheduler.inputs import (
    Input,
    JobChanged,
    JobRemoved,
    JobUnreadable,
    Reported,
    RunEnded,
    RunPending,
    RunStarted,
    RunUnknown,
    Settled,
    StoreRestored,
    Triggered,
    WorkersChanged,
)
from distcron.scheduler.plan import Plan
from distcron.scheduler.policy import ON_TIME_TOLERANCE, PRUNE_EVERY, Policy
from distcron.scheduler.records import LaunchRecord, LaunchState, launch_id_for, launch_id_of
from distcron.scheduler.staging import ReleaseMarks
from distcron.scheduler.template import LaunchTemplate

# Launch ids per release mark: a value well within etcd's request size.
MARK_SIZE = 5000
# Backfilled launch ids a leader remembers, so that a request it sees twice
# (rewritten before it was consumed) is launched once.
MAX_BACKFILLS_REMEMBERED = 100_000

OUTCOMES = {
    RunState.SUCCEEDED: LaunchState.SUCCEEDED,
    RunState.FAILED: LaunchState.FAILED,
    RunState.TIMED_OUT: LaunchState.TIMED_OUT,
    RunState.STOPPED: LaunchState.STOPPED,
    RunState.LOST: LaunchState.LOST,
    RunState.MISSED: LaunchState.MISSED,
}


@dataclass(slots=True)
class _Pending:
    """What the inputs applied since the last decision added to it."""

    plan: Plan = field(default_factory=Plan)
    triggers: list[str] = field(default_factory=list)
    outputs: dict[str, bytes] = field(default_factory=dict)
    cleanups: list[WorkerRun] = field(default_factory=list)
    follows: list[str] = field(default_factory=list)
    restore_marker: bytes | None = None
    notes: list[Note] = field(default_factory=list)


class LeaderRounds:
    def __init__(self, fence: int, replica: str, local_location: str | None = None,
                 prune_every: int = PRUNE_EVERY, *, stage_lead: timedelta = timedelta(0),
                 staging_executors: frozenset[str] = frozenset(), store_id: str = "",
                 other_locations: Mapping[str, str] | None = None) -> None:
        self.fence = fence
        self.store_id = store_id  # launched jobs see it beside the fence
        self.core = SchedulerCore(fence, replica, local_location, stage_lead=stage_lead,
                                  staging_executors=staging_executors,
                                  other_locations=other_locations)
        self.marks = ReleaseMarks(fence)
        self._idle_marks: list[str] = []  # found at takeover with nothing left to release
        self.templates: dict[str, LaunchTemplate] = {}
        self.prune_every = prune_every
        self._written: dict[str, int] = {}  # records created per job since its last prune
        self._backfilled: set[str] = set()  # backfilled launch ids of this term
        self._pending = _Pending()

    # -- before the first round ----------------------------------------------------

    def restore(self, records: Iterable[LaunchRecord], now: datetime) -> None:
        """Take back the records a new leader found live (and the spans its
        cursors point at). Call after the jobs are applied, before a decision."""
        for record in records:
            self.core.restore(record, now)

    def load_marks(self, marks: Mapping[str, Iterable[str] | None], now: datetime) -> None:
        """The release marks a new leader found. Call after :meth:`restore`.
        A launch staged on a worker agent that no mark names is this leader's
        to release (its worker holds it until a mark does); one a mark names
        may have started, and its worker reports it."""
        def launching(launch_id: str) -> bool:
            record = self.core.live_record(launch_id)
            return record is not None and record.state is LaunchState.LAUNCHING
        self._idle_marks += self.marks.load(marks, launching)
        for record in list(self.core.live_records()):
            if (record.executor == "agent" and record.staged
                    and record.state is LaunchState.LAUNCHING
                    and not self.marks.released_before(record.launch_id)):
                self._pending.notes.append(Note("reconcile_staged",
                                                (("launch_id", record.launch_id),)))
                self._pending.plan.absorb(
                    self.core.adopt_staged(record.launch_id, now, prepare=False))

    def to_settle(self) -> list[LaunchRecord]:
        """The launches a new leader must ask its executors about (see
        :class:`~distcron.scheduler.inputs.Settled`). Launches on worker agents are
        settled by their workers' reports and registrations instead."""
        return [r for r in self.core.live_records() if r.submitted and r.executor != "agent"]

    # -- rounds ------------------------------------------------------------------

    def load(self, jobs: Iterable[JobChanged | JobUnreadable], now: datetime) -> None:
        """A new leader's jobs, before its first round (in parts, for many jobs);
        the first :meth:`decide` includes what they changed. Noted only in sum."""
        notes = len(self._pending.notes)
        self.apply(jobs, now)
        del self._pending.notes[notes:]

    def apply(self, inputs: Iterable[Input], now: datetime) -> None:
        """Apply inputs without deciding yet; the next :meth:`decide` includes
        what they changed."""
        for item in inputs:
            self._pending.plan.absorb(self._apply(item, now))

    def decide(self, inputs: Iterable[Input], now: datetime) -> Decision:
        """One round: the inputs, then everything due at ``now``."""
        self.apply(inputs, now)
        pending, self._pending = self._pending, _Pending()
        plan = pending.plan
        plan.absorb(self.core.tick(now))
        starts, assignments = self._starts(plan, now)
        stages = self._requests(plan.stages)
        # Staged on a worker agent: the assignment, committed with the intent, says so.
        assignments += [Start(s.record, s.request, s.record.slot + ON_TIME_TOLERANCE)
                        for s in stages if s.record.executor == "agent" and s.record.slot]
        releases = self._requests(plan.releases)
        marks = dict(self.marks.mark(s.record.launch_id for s in releases[n:n + MARK_SIZE])
                     for n in range(0, len(releases), MARK_SIZE))
        cleanups = [*self._idle_marks, *self.marks.settle(plan.records.values())]
        self._idle_marks = []
        stop_requests, stopped, stops = self._stops(plan)
        for record in plan.records.values():
            if record.state is LaunchState.LOST and record.worker is not None:
                pending.cleanups.append(
                    WorkerRun(record.worker, record.run_id or record.launch_id,
                              record.launch_id))
        for record in plan.unstages:
            # Staged on a worker, and let go there before its release (ended, or
            # placed again): deleting the assignment tells the worker to unstage it.
            now_is = plan.records.get(record.launch_id, record)
            if record.worker is not None and (not now_is.state.live
                                              or now_is.worker != record.worker):
                pending.cleanups.append(
                    WorkerRun(record.worker, record.run_id or record.launch_id,
                              record.launch_id))
        follows = tuple(r for lid in pending.follows
                        if (r := self.core.live_record(lid)) is not None)
        return Decision(
            records=plan.records, created=frozenset(plan.created), cursors=plan.cursors,
            consumed_triggers=tuple(pending.triggers), outputs=pending.outputs,
            assignments=tuple(a for a in assignments if a.record.launch_id not in stopped),
            stop_requests=tuple(stop_requests), cleanups=tuple(pending.cleanups),
            quarantined=plan.quarantined, starts=tuple(starts), stops=tuple(stops),
            follows=follows, prunes=self._prunes(plan), notes=tuple(pending.notes),
            restore_marker=pending.restore_marker, stages=_here(stages),
            releases=_here(releases), notifications=self._notifications(plan),
            unstages=tuple(r for r in plan.unstages if r.executor != "agent"),
            release_marks=marks,
            release_cleanups=tuple(cleanups))

    def next_wakeup(self) -> datetime | None:
        return self.core.next_wakeup()

    # -- inputs ------------------------------------------------------------------

    def _apply(self, item: Input, now: datetime) -> Plan:
        notes = self._pending.notes
        if isinstance(item, JobChanged):
            spec = item.spec
            plan = self.core.set_job(Policy.of(spec), item.cursor, now)
            self.templates[spec.name] = LaunchTemplate.of(spec)
            notes.append(Note("job_loaded", (("job", spec.name), ("paused", spec.paused))))
            return plan
        if isinstance(item, JobUnreadable):
            # Its old template stays: a live run's retries still need it.
            plan = Plan()
            self.core.quarantine(item.name, f"its stored spec is invalid: {item.error}", plan)
            return plan
        if isinstance(item, JobRemoved):
            self.templates.pop(item.name, None)
            notes.append(Note("job_removed", (("job", item.name),)))
            return self.core.remove_job(item.name, now)
        if isinstance(item, Triggered):
            self._pending.triggers.append(item.trigger_id)
            if item.slot is not None:
                return self._backfill(item, now)
            notes.append(Note("triggered", (("job", item.job), ("launch_id", item.launch_id))))
            return self.core.trigger(item.job, item.launch_id, now)
        if isinstance(item, Reported):
            return self._reported(item, now)
        if isinstance(item, WorkersChanged):
            return self._workers_changed(item, now)
        if isinstance(item, RunStarted):
            return self.core.run_started(item.launch_id, item.status.started_at or now,
                                         pid=item.status.pid, worker=item.worker)
        if isinstance(item, RunPending):
            return self.core.run_pending(item.launch_id, item.status.reason)
        if isinstance(item, RunEnded):
            return self._ended(item.launch_id, item.status, item.output, now)
        if isinstance(item, RunUnknown):
            notes.append(Note("run_unknown", (("launch_id", item.launch_id),
                                              ("reason", repr(item.reason))), warning=True))
            return self.core.run_ended(item.launch_id, LaunchState.UNKNOWN, now,
                                       reason=item.reason)
        if isinstance(item, StoreRestored):
            self._pending.restore_marker = item.marker
            notes.append(Note("store_restored", (("at", item.at.isoformat()),), warning=True))
            return self.core.restored(item.at, now)
        return self._settled(item, now)

    def _backfill(self, item: Triggered, now: datetime) -> Plan:
        """A past slot to run, once: a request seen again this term (written
        twice before it was consumed) launches nothing more."""
        assert item.slot is not None
        launch_id = launch_id_for(item.job, item.slot)
        if launch_id in self._backfilled:
            return Plan()
        if len(self._backfilled) >= MAX_BACKFILLS_REMEMBERED:
            self._backfilled.clear()  # long after: their requests are consumed
        self._backfilled.add(launch_id)
        self._pending.notes.append(Note("backfill", (("job", item.job),
                                                     ("launch_id", launch_id))))
        return self.core.backfill(item.job, item.slot, now)

    def _ended(self, launch_id: str, status: RunStatus, output: bytes, now: datetime) -> Plan:
        outcome = OUTCOMES.get(status.state, LaunchState.UNKNOWN)
        self._pending.notes.append(Note("run_ended", (
            ("launch_id", launch_id), ("state", outcome.value), ("exit_code", status.exit_code))))
        plan = self.core.run_ended(
            launch_id, outcome, now, exit_code=status.exit_code, signal=status.signal,
            started_at=status.started_at, ended_at=status.ended_at, reason=status.reason)
        if output and launch_id in plan.records:
            # By the attempt's run id: each attempt of a retried launch keeps its own.
            self._pending.outputs[status.launch_id] = output
        return plan

    def _reported(self, report: Reported, now: datetime) -> Plan:
        """A worker said a run started or ended; an end also cleans up its keys.
        A report of another attempt than the launch's current one changes nothing."""
        launch_id = launch_id_of(report.run_id)
        record = self.core.live_record(launch_id)
        if record is None or record.run_id != report.run_id:
            return Plan()
        status = report.status
        if status.state is RunState.RUNNING:
            return self.core.run_started(launch_id, status.started_at or now, pid=status.pid,
                                         worker=report.worker)
        if not status.state.final:
            return Plan()
        self._pending.cleanups.append(WorkerRun(report.worker, report.run_id, launch_id))
        self._pending.notes.append(Note("run_reported", (
            ("launch_id", launch_id), ("worker", report.worker),
            ("state", status.state.value), ("exit_code", status.exit_code))))
        return self._ended(launch_id, status, b"", now)

    def _workers_changed(self, change: WorkersChanged, now: datetime) -> Plan:
        plan = Plan()
        for record in list(self.core.live_records()):
            # A worker may report an end and die before that report is applied.
            if (record.executor == "agent" and record.worker is not None
                    and record.worker not in change.workers):
                report = change.reports.get(record.run_id or record.launch_id)
                if report is not None:
                    plan.absorb(self._reported(report, now))
        plan.absorb(self.core.set_workers(change.workers, now))
        return plan

    def _settled(self, settled: Settled, now: datetime) -> Plan:
        """Takeover: what became of a run the previous leader left live (see
        ``replica/reconcile.py``). What cannot be learnt fails closed."""
        launch_id, status = settled.launch_id, settled.status
        record = self.core.live_record(launch_id)
        notes = self._pending.notes
        if record is None:
            return Plan()
        if status is not None and status.state is RunState.STAGED:
            notes.append(Note("reconcile_staged", (("launch_id", launch_id),)))
            return self.core.adopt_staged(launch_id, now, prepare=False)
        if (record.staged and record.state is LaunchState.LAUNCHING
                and not self.marks.released_before(launch_id)
                and (status is None or status.state is RunState.NOT_FOUND)):
            # No leader committed its release: it certainly never started.
            notes.append(Note("reconcile_restage", (("launch_id", launch_id),)))
            return self.core.adopt_staged(launch_id, now, prepare=True)
        if status is not None and status.state is RunState.NOT_FOUND:
            if record.state is LaunchState.LAUNCHING:
                # The executor never received it: start it now (idempotent by run id).
                # (One queued there for resources was received: its fate is unknown.)
                notes.append(Note("reconcile_start", (("launch_id", launch_id),)))
                plan = Plan()
                plan.starts.append(record)
                return plan
            status = None
        if status is not None and status.state is not RunState.LOST:
            notes.append(Note("reconcile_adopt", (("launch_id", launch_id),
                                                  ("state", status.state.value))))
            if status.state is RunState.RUNNING:
                self._pending.follows.append(launch_id)
                return self.core.run_started(launch_id, status.started_at or now,
                                             pid=status.pid, worker=settled.worker)
            if status.state is RunState.PENDING:
                self._pending.follows.append(launch_id)
                return self.core.run_pending(launch_id, status.reason)
            return self._ended(launch_id, status, settled.output, now)
        reason = "takeover could not learn the run's fate"
        if status is not None and status.reason:
            reason += f" ({status.reason})"
        spec = self.core.job(record.job)
        if spec is not None and spec.idempotent:
            notes.append(Note("reconcile_relaunch", (("launch_id", launch_id),), warning=True))
            return self.core.relaunch(launch_id, now, reason + "; relaunched: idempotent job")
        notes.append(Note("reconcile_unknown", (("launch_id", launch_id),), warning=True))
        return self.core.run_ended(launch_id, LaunchState.UNKNOWN, now, reason=reason)

    # -- what the plan means for executors and workers ---------------------------------

    def _starts(self, plan: Plan, now: datetime) -> tuple[list[Start], list[Start]]:
        """The plan's starts with their requests: on this replica, and on workers."""
        here: list[Start] = []
        workers: list[Start] = []
        for record in list(plan.starts):
            template = self.templates.get(record.job)
            assert record.run_id is not None
            if template is None:
                # Only a launch of a job removed since (a takeover's start) gets here.
                failed = RunStatus.failed(record.run_id,
                                          f"job {record.job!r} is no longer defined")
                plan.absorb(self._ended(record.launch_id, failed, b"", now))
                continue
            start = Start(record, template.request(record.run_id, record.slot, self.fence,
                                                   self.store_id,
                                                   record.idempotency_key))
            (workers if record.executor == "agent" else here).append(start)
        return here, workers

    def _requests(self, records: Iterable[LaunchRecord]) -> tuple[Start, ...]:
        """Staged launches with their requests (their jobs are live: removing or
        pausing a job lets its staged launch go)."""
        found = []
        for record in records:
            template = self.templates.get(record.job)
            if template is not None and record.run_id is not None:
                found.append(Start(record, template.request(
                    record.run_id, record.slot, self.fence, self.store_id,
                    record.idempotency_key)))
        return tuple(found)

    def _stops(self, plan: Plan) -> tuple[list[WorkerRun], set[str], list[LaunchRecord]]:
        """The plan's stops: a request to a worker for a run on a worker agent
        (committed with the record that says so), else a stop on this replica.

        A launch the plan both starts and stops (two slots of a ``replace`` job
        decided at once) gets the stop alone: a worker never starts it. A run
        the plan also records as ended gets none: its clean-up deletes the
        assignment, which a stop would bring back as litter.
        """
        requests: list[WorkerRun] = []
        stopped: set[str] = set()  # launches on workers the plan stops: never assigned
        here: list[LaunchRecord] = []
        for record in plan.stops:
            if record.executor != "agent":
                here.append(record)
                continue
            current = plan.records.get(record.launch_id)
            if current is None or current.worker is None:
                continue
            stopped.add(record.launch_id)
            if current.state.live:
                requests.append(WorkerRun(current.worker, current.run_id or current.launch_id,
                                          current.launch_id))
        return requests, stopped, here

    def _notifications(self, plan: Plan) -> tuple[Notification, ...]:
        """Who is told: each launch that ended (or slot span recorded) in a state
        its job's ``notify_on`` names, once per launch and state."""
        found = []
        for launch_id in plan.ended | plan.created:
            record = plan.records.get(launch_id)
            template = self.templates.get(record.job) if record is not None else None
            if (record is None or template is None or not template.notify
                    or record.state.live or record.state.value not in template.notify_on):
                continue
            found.append(Notification(launch_id, record.state.value, _body(record),
                                      template.notify, template.notify_output))
        return tuple(sorted(found, key=lambda n: (n.launch_id, n.state)))

    def _prunes(self, plan: Plan) -> tuple[str, ...]:
        due = []
        for launch_id in plan.created:
            job = launch_id.partition("@")[0]
            self._written[job] = self._written.get(job, 0) + 1
            if self._written[job] >= self.prune_every:
                self._written[job] = 0
                due.append(job)
        return tuple(due)


def _here(starts: Iterable[Start]) -> tuple[Start, ...]:
    """The staged launches this replica's executors prepare and release (a
    worker agent does that for its own, from its assignment and the marks)."""
    return tuple(s for s in starts if s.record.executor != "agent")


def _body(record: LaunchRecord) -> dict[str, object]:
    """What a notification says of its launch."""
    body = record.model_dump(mode="json", include={
        "launch_id", "job", "slot", "until", "count", "kind", "state", "cause", "reason",
        "attempt", "worker", "exit_code", "signal", "started_at", "ended_at", "fence",
        "replica"})
    return {key: value for key, value in body.items() if value is not None}
