"""The scheduler core: which slots to launch, skip or mark missed, and when.

Pure logic. Every method takes ``now`` and returns a :class:`Plan`; nothing
here reads a clock, touches the store or starts a process. The leader commits
each round's plans in transactions guarded by its fence and only then starts or
stops runs. When a commit fails the leader discards this object and builds a
new one from the store, so the core never has to undo a decision.

Each job keeps its *cursor*, the last slot already accounted for. A job's
slots after the cursor are visited in order and each ends in exactly one
record: launched, queued, skipped (overlap or pause) or missed (starting
deadline or catch-up): :mod:`distcron.scheduler.slots` decides what needs only
the slot, :mod:`distcron.scheduler.overlap` the overlap policy, and
:mod:`distcron.scheduler.placement` which worker runs it;
:mod:`distcron.scheduler.staging` commits launches ahead of their slot.
Consecutive slots skipped or missed for the same reason share one record that
spans them.

A job whose schedule cannot be computed (a spec that no longer validates, an
expression with no slot left, a zone gone from the system) is *quarantined*:
the plan says so and why, the job gets no more slots until its spec changes,
and every other job runs on.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta

from distcron.cron import parse
from distcron.scheduler import slots
from distcron.scheduler.ledger import Job, Ledger
from distcron.scheduler.overlap import Admission
from distcron.scheduler.placement import Placement
from distcron.scheduler.plan import Plan
from distcron.scheduler.policy import (
    MAX_BACKLOG_SLOTS,
    ON_TIME_TOLERANCE,
    WORKER_GRACE,
    JobPolicy,
    WorkerView,
    retry_delay,
    starting_deadline,
)
from distcron.scheduler.records import (
    Cause,
    LaunchRecord,
    LaunchState,
    launch_id_for,
)
from distcron.scheduler.staging import Staging
from distcron.scheduler.wakeups import WakeKind, Wakeup, Wakeups
from distcron.store.layout import Cursor

_FAILED = (LaunchState.FAILED, LaunchState.TIMED_OUT)



class SchedulerCore:
    """The leader's decisions, for one term of leadership (one fence)."""

    def __init__(self, fence: int, replica: str, local_location: str | None = None, *,
                 stage_lead: timedelta = timedelta(0),
                 staging_executors: frozenset[str] = frozenset(),
                 other_locations: Mapping[str, str] | None = None) -> None:
        self.fence = fence
        self.replica = replica
        self._ledger = Ledger(fence, replica, local_location, other_locations)
        self._jobs = self._ledger.jobs
        self._wakeups = Wakeups(self._stale)
        self._placement = Placement(self._ledger, self._wakeups)
        self._admission = Admission(self._ledger, self._placement)
        self._staging = Staging(self._ledger, self._wakeups, self._placement, stage_lead,
                                staging_executors)
        self.quarantined: dict[str, str] = {}  # job -> why it cannot be scheduled

    # -- the job set -------------------------------------------------------

    def set_job(self, spec: JobPolicy, cursor: Cursor | None, now: datetime) -> Plan:
        """Add a job, or apply an edit to one. A new job without a stored cursor
        owns the slots after ``now``. A schedule that cannot be computed
        quarantines the job (see the module docstring)."""
        plan = Plan()
        job = self._jobs.get(spec.name)
        try:
            schedule = parse(spec.schedule, tz=spec.timezone, job=spec.name)
        except Exception as exc:
            # Any error, not only bad syntax: one job's schedule must not stop every
            # replica (each would hit it again at every restart).
            if job is not None:
                job.spec = spec
                self._staging.edited(job, spec, None, now, plan)
            elif cursor is None:
                plan.cursors[spec.name] = Cursor(now)  # it owns the slots after now
            self.quarantine(spec.name, f"its schedule cannot be read: {exc}", plan)
            return plan
        if job is None:
            job = self._jobs[spec.name] = Job(spec, schedule, cursor.slot if cursor else now)
            if cursor is None:
                plan.cursors[spec.name] = Cursor(job.cursor)
            # Staged at the next tick, not now: at takeover its live records
            # are restored after the jobs, and staging must see them.
            self._release(job, plan)
            self._schedule(job, now, plan, stage=False)
            return plan
        else:
            if job.spec.paused and not spec.paused and not job.held:
                # Slots that fell due while paused are the pause's, not catch-up's.
                self._account(job, now, plan, until=now)
            if spec.paused and not job.spec.paused:
                self._stop_waiting_for_resources(job, Cause.PAUSED, "the job was paused",
                                                 plan)
            # Before the job takes the new spec: what changed decides.
            self._staging.edited(job, spec, schedule, now, plan)
            job.spec, job.schedule = spec, schedule
        self._release(job, plan)
        self._schedule(job, now, plan)
        return plan

    def quarantine(self, name: str, reason: str, plan: Plan) -> None:
        """Give the job no more slots until its spec changes (its live runs are
        still followed to their end)."""
        job = self._jobs.get(name)
        if job is not None:
            job.held = True
            job.version += 1  # its wake-ups are stale now
        if self.quarantined.get(name) != reason:
            self.quarantined[name] = reason
            plan.quarantined[name] = reason

    def restored(self, until: datetime, now: datetime) -> Plan:
        """The store was restored from a copy older than what ran: every job's
        slots up to ``until`` that the copy does not account for may have run,
        and so may the launches it holds staged: all are recorded missed, never
        run again (fail closed)."""
        plan = Plan()
        for record in list(self._ledger.live_records()):
            if record.staged and record.state is LaunchState.LAUNCHING:
                # A release mark written after the copy is not in it: whether
                # this one was released cannot be known.
                self._ledger.end(record, LaunchState.MISSED, Cause.RESTORED,
                                 "staged in a copy of the store older than what ran; "
                                 "it may have run since", now, plan)
                plan.unstages.append(record)
        for job in self._jobs.values():
            if not job.held and job.cursor < until:
                self._account(job, now, plan, until, forced=(LaunchState.MISSED,
                                                             Cause.RESTORED))
                self._schedule(job, now, plan)
        return plan

    def adopt_staged(self, launch_id: str, now: datetime, *, prepare: bool) -> Plan:
        """Takeover: a staged launch still to release. With ``prepare``, its
        executor here prepares it again (it is not staged anywhere any more)."""
        plan = Plan()
        record = self._ledger.find(launch_id)
        job = self._jobs.get(record.job) if record is not None else None
        if record is None:
            return plan
        deadline = starting_deadline(job.spec) if job is not None else None
        if job is None:
            self._ledger.end(record, LaunchState.SKIPPED, Cause.JOB_REMOVED,
                             "the job was removed before its slot", now, plan)
            plan.unstages.append(record)
        elif deadline is not None and record.slot is not None and now - record.slot > deadline:
            self._ledger.end(record, LaunchState.MISSED, Cause.DEADLINE,
                             "staged, never released, and now past its starting deadline",
                             now, plan)
            plan.unstages.append(record)
        else:
            self._staging.adopt(job, record, now, plan, prepare=prepare)
        return plan

    def remove_job(self, name: str, now: datetime) -> Plan:
        """Forget a job. Its live runs finish and are recorded; what waits
        (queued, retrying) is dropped with a reason, and what its executor has
        not started yet (queued there for resources) is stopped through it."""
        plan = Plan()
        job = self._jobs.get(name)
        if self.quarantined.pop(name, None) is not None:
            plan.quarantined[name] = None
        if job is None:
            return plan
        self._staging.removed(job, now, plan)
        self._stop_waiting_for_resources(job, Cause.JOB_REMOVED, "the job was removed", plan)
        for record in list(job.live.values()):
            if record.waiting:
                self._ledger.end(record, LaunchState.SKIPPED, Cause.JOB_REMOVED,
                                 "the job was removed", now, plan)
            elif record.state is LaunchState.RETRYING:
                self._ledger.end(record, LaunchState.STOPPED, Cause.JOB_REMOVED,
                                 "the job was removed", now, plan)
        self._ledger.forget(name)
        return plan

    def restore(self, record: LaunchRecord, now: datetime) -> None:
        """Take back a record found in the store at takeover: a live one is
        tracked again, a span is continued if it ends at the job's cursor."""
        job = self._jobs.get(record.job)
        if job is None:
            if record.state.live:
                self._ledger.add_orphan(record)
            return
        if record.state.live:
            self._ledger.add(job, record)
            if record.state is LaunchState.RETRYING and record.retry_at is not None:
                self._wakeups.push(record.retry_at, WakeKind.RETRY, record.launch_id)
        elif (record.state in (LaunchState.SKIPPED, LaunchState.MISSED)
              and (record.until or record.slot) == job.cursor):
            job.gap = record

    def job(self, name: str) -> JobPolicy | None:
        job = self._jobs.get(name)
        return None if job is None else job.spec

    def live_record(self, launch_id: str) -> LaunchRecord | None:
        return self._ledger.find(launch_id)

    def live_records(self) -> Iterator[LaunchRecord]:
        return self._ledger.live_records()

    # -- workers ---------------------------------------------------------------

    def set_workers(self, workers: Mapping[str, WorkerView], now: datetime) -> Plan:
        """The registered worker agents changed. Runs on a worker that vanished
        are lost unless it comes back within WORKER_GRACE (a restart adopts
        them); launches waiting for a worker look for one again."""
        running_on = [r.worker for r in self.live_records()
                      if r.executor == "agent" and r.worker is not None]
        for gone in self._placement.update(workers, running_on, now):
            self._wakeups.push(now + WORKER_GRACE, WakeKind.VANISHED, gone)
        plan = Plan()
        for record in list(self.live_records()):
            if record.cause is Cause.WAITING_FOR_WORKER:
                self._placement.place_again(record.launch_id, now, plan)
        return plan

    def _lose_runs(self, worker: str, now: datetime, plan: Plan) -> None:
        """The worker did not come back: what it was running is lost. What is
        staged on it and not released yet never started: its release places it
        again (see :meth:`Staging.release`)."""
        since = self._placement.vanished.pop(worker, None)
        if since is None:
            return
        lost = [r.launch_id for r in self.live_records() if r.executor == "agent"
                and r.worker == worker and r.submitted and not self._staging.holds(r)]
        reason = f"worker {worker} vanished at {since.isoformat(timespec='seconds')}"
        for launch_id in lost:
            plan.absorb(self.run_ended(launch_id, LaunchState.LOST, now, reason=reason))

    # -- time ----------------------------------------------------------------

    def next_wakeup(self) -> datetime | None:
        """When :meth:`tick` next has something to do."""
        return self._wakeups.next()

    def tick(self, now: datetime) -> Plan:
        """Everything due at ``now``: slots of jobs, retries, placements, and
        the ends of vanished workers' grace."""
        plan = Plan()
        for entry in self._wakeups.due(now):
            if entry.kind is WakeKind.SLOT:
                job = self._jobs[entry.key]
                try:
                    self._account(job, now, plan, until=now)
                except Exception as exc:  # see set_job
                    self.quarantine(job.spec.name,
                                    f"its next slots cannot be computed: {exc}", plan)
                    continue
                self._schedule(job, now, plan)
            elif entry.kind is WakeKind.RELEASE:
                released = self._staging.release(entry.key, now, plan)
                if released is not None and released.spec.concurrency == "allow":
                    self._schedule(released, now, plan)  # its next slot may be staged now
            elif entry.kind is WakeKind.PLACE:
                self._placement.place_again(entry.key, now, plan)
            elif entry.kind is WakeKind.VANISHED:
                self._lose_runs(entry.key, now, plan)
            else:
                self._admission.retry(entry.key, now, plan)
        return plan

    # -- events ----------------------------------------------------------------

    def trigger(self, job_name: str, launch_id: str, now: datetime) -> Plan:
        """Run a job now, by hand. The overlap policy still applies: a manual
        run of a job that forbids overlap is skipped while another one runs."""
        plan = Plan()
        job = self._jobs.get(job_name)
        if job is not None:
            self._admission.admit(job, None, launch_id, now, plan)
        return plan

    def backfill(self, job_name: str, slot: datetime, now: datetime) -> Plan:
        """Run a past slot now, on request. Its record is new (the API writes the
        request only while the slot has none; one still live here is left
        alone). The overlap policy applies, except that backfilled slots of a
        job that forbids or queues overlap wait behind each other rather than
        being skipped, and no starting deadline applies to them; nothing of the
        job's cursor or current span changes."""
        plan = Plan()
        job = self._jobs.get(job_name)
        launch_id = launch_id_for(job_name, slot)
        if job is not None and self._ledger.find(launch_id) is None:
            self._admission.admit(job, slot, launch_id, now, plan, backfill=True)
        return plan

    def run_started(self, launch_id: str, started_at: datetime, pid: int | None = None,
                    worker: str | None = None) -> Plan:
        plan = Plan()
        record = self._ledger.find(launch_id)
        if record is not None and (record.state is LaunchState.LAUNCHING
                                   or record.waiting_for_resources):
            update: dict[str, object] = {
                "state": LaunchState.RUNNING, "started_at": started_at, "pid": pid,
                "worker": worker or record.worker}
            if record.waiting_for_resources and launch_id not in self._ledger.stopping:
                update |= {"cause": None, "reason": ""}
            started = record.model_copy(update=update)
            self._ledger.replace(started)
            plan.write(started)
        return plan

    def run_pending(self, launch_id: str, reason: str) -> Plan:
        """A launch waits in a batch scheduler (Slurm) for resources: queued, cause
        ``waiting_for_resources``, with the scheduler's reason. It is launched all
        the same (see ``LaunchRecord.submitted``): active for overlap policies,
        asked about at takeover, its end recorded."""
        plan = Plan()
        record = self._ledger.find(launch_id)
        if record is None or launch_id in self._ledger.stopping:
            return plan  # a stop's reason stays on the record until it ends
        if (record.state is LaunchState.LAUNCHING
                or (record.waiting_for_resources and record.reason != reason)):
            pending = record.model_copy(update={"state": LaunchState.QUEUED,
                                                "cause": Cause.WAITING_FOR_RESOURCES,
                                                "reason": reason})
            self._ledger.replace(pending)
            plan.write(pending)
            record = pending
        if not record.waiting_for_resources:
            return plan
        # Paused or removed while it was being submitted, or under an earlier
        # leader whose stop may not have reached the executor.
        job = self._jobs.get(record.job)
        if job is None:
            self._stop_pending(record, Cause.JOB_REMOVED, "the job was removed", plan)
        elif job.spec.paused:
            self._stop_pending(record, Cause.PAUSED, "the job was paused", plan)
        return plan

    def run_ended(self, launch_id: str, outcome: LaunchState, now: datetime, *,
                  exit_code: int | None = None, signal: int | None = None,
                  started_at: datetime | None = None, ended_at: datetime | None = None,
                  reason: str = "") -> Plan:
        """A run ended (or its fate is settled: unknown, lost). Failed runs are
        retried when the job asks for it; a queued slot then gets its turn."""
        plan = Plan()
        record = self._ledger.find(launch_id)
        if record is None or not record.submitted:
            return plan
        job = self._jobs.get(record.job)
        cause = None
        stopped = self._ledger.stopping.pop(launch_id, None)
        if stopped is not None:
            outcome, (cause, reason) = LaunchState.STOPPED, stopped
        elif job is not None and launch_id in job.replacing:
            outcome, cause = LaunchState.STOPPED, Cause.REPLACED
            reason = f"replaced by {job.replacing.pop(launch_id)}"
        elif outcome is LaunchState.MISSED:  # its executor dropped it at its deadline
            cause = Cause.DEADLINE
        update: dict[str, object] = {
            "exit_code": exit_code, "signal": signal, "ended_at": ended_at or now,
            "started_at": record.started_at or started_at, "reason": reason, "cause": cause}
        if job is not None and outcome in _FAILED and record.attempt <= job.spec.retries:
            retry_at = (ended_at or now) + retry_delay(job.spec, record.attempt)
            ended = record.model_copy(update=update).with_attempt_done(outcome, reason)
            retrying = ended.model_copy(update={
                "state": LaunchState.RETRYING, "retry_at": retry_at,
                "reason": f"attempt {record.attempt} {outcome.value}"
                          + (f": {reason}" if reason else "")})
            self._ledger.replace(retrying)
            plan.write(retrying)
            self._wakeups.push(retry_at, WakeKind.RETRY, launch_id)
        else:
            self._ledger.end(record.model_copy(update=update), outcome, cause, None, now, plan)
        if job is not None and not job.active():
            self._admission.release_queued(job, now, plan)
            if not job.live:  # its next slot may be staged now
                self._schedule(job, now, plan)
        return plan

    def relaunch(self, launch_id: str, now: datetime, reason: str) -> Plan:
        """Run a live record again as its next attempt under the same launch id
        (takeover found its fate unknown and the job is idempotent)."""
        plan = Plan()
        record = self._ledger.find(launch_id)
        if record is not None:
            # The attempt whose fate is unknown stays on the record as such.
            unknown = record.with_attempt_done(LaunchState.UNKNOWN, reason)
            self._admission.start_attempt(unknown, record.attempt + 1, now, plan, reason,
                                idempotency_key=record.idempotency_key or record.run_id)
        return plan

    # -- decisions -------------------------------------------------------------

    def _account(self, job: Job, now: datetime, plan: Plan, until: datetime,
                 forced: tuple[LaunchState, Cause] | None = None) -> None:
        """Decide every slot of ``job`` in (cursor, until] (all as ``forced``, if given)."""
        due = slots.due_slots(job, until)
        if not due:
            return
        if len(due) > MAX_BACKLOG_SLOTS:
            # An outage far longer than the schedule's period: the oldest slots
            # can only be missed; count them as one span without visiting each.
            last, before = slots.latest_before(job, until)
            slots.record_gap(self._ledger, job, due[0], LaunchState.MISSED, Cause.DEADLINE,
                             slots.REASONS[Cause.DEADLINE], now, plan, span_to=before,
                             count=MAX_BACKLOG_SLOTS)
            due = [last]
        latest = due[-1]
        backlog = len(due) > 1  # after downtime: what catch-up is for
        for slot in due:
            fate = forced or slots.fate(job, slot, slot == latest, now)
            if fate is None:
                self._admission.admit(job, slot, launch_id_for(job.spec.name, slot), now, plan,
                            catching_up=backlog or now - slot > ON_TIME_TOLERANCE)
            else:
                state, cause = fate
                slots.record_gap(self._ledger, job, slot, state, cause, slots.REASONS[cause],
                                 now, plan)
            job.cursor = slot
        plan.cursors[job.spec.name] = Cursor(latest, job.gap.launch_id if job.gap else None)

    # -- bookkeeping -----------------------------------------------------------

    def _stop_waiting_for_resources(self, job: Job, cause: Cause, reason: str,
                                    plan: Plan) -> None:
        """Stop, through its executor, each launch of the job that its executor has
        not started yet; its end is recorded ``stopped`` with ``cause``."""
        for record in list(job.live.values()):
            if record.waiting_for_resources and record.launch_id not in self._ledger.stopping:
                self._stop_pending(record, cause, reason, plan)

    def _stop_pending(self, record: LaunchRecord, cause: Cause, reason: str,
                      plan: Plan) -> None:
        self._ledger.stopping[record.launch_id] = (cause, reason)
        stopping = record.model_copy(update={"reason": f"stopping: {reason}"})
        self._ledger.replace(stopping)
        plan.write(stopping)
        plan.stops.append(stopping)

    def _release(self, job: Job, plan: Plan) -> None:
        job.held = False
        if self.quarantined.pop(job.spec.name, None) is not None:
            plan.quarantined[job.spec.name] = None

    def _schedule(self, job: Job, now: datetime, plan: Plan, *, stage: bool = True) -> None:
        """Stage the job's next slot if it is close and may be, then queue its next
        wake-up: that slot, or ``lead`` before it when it may be staged."""
        try:
            if stage:
                self._staging.stage_next(job, now, plan)
            when = slots.next_wake(job, now)
        except Exception as exc:  # see set_job
            self.quarantine(job.spec.name, f"its next slot cannot be computed: {exc}", plan)
            return
        if self._staging.can_stage(job):
            early = when - self._staging.lead
            # Within the lead already and nowhere to stage it: it waits for its slot.
            if early > now or self._staging.has_place(job):
                when = max(now, early)
        job.version += 1
        self._wakeups.push(when, WakeKind.SLOT, job.spec.name, job.version)

    def _stale(self, entry: Wakeup) -> bool:
        if entry.kind is WakeKind.VANISHED:
            return entry.key not in self._placement.vanished
        if entry.kind is WakeKind.PLACE:
            return self._placement.stale(entry)
        if entry.kind is WakeKind.RELEASE:
            return self._staging.stale(entry)
        if entry.kind is WakeKind.RETRY:
            return self._ledger.find(entry.key) is None
        job = self._jobs.get(entry.key)
        return job is None or job.held or job.version != entry.version
