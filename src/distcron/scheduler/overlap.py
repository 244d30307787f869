"""Admission: the overlap policy for a slot (or a manual run) that is due, and
starting each attempt of a launch: the first, a retry, or one queued behind a
run that ended.

Pure, like the rest of the core: it writes records into the plan it is given.
"""

from __future__ import annotations

from datetime import datetime

from distcron.scheduler import slots
from distcron.scheduler.ledger import Job, Ledger
from distcron.scheduler.placement import Placement
from distcron.scheduler.plan import Plan
from distcron.scheduler.policy import starting_deadline
from distcron.scheduler.records import Cause, LaunchKind, LaunchRecord, LaunchState, run_id_for


class Admission:
    def __init__(self, ledger: Ledger, placement: Placement) -> None:
        self._ledger = ledger
        self._placement = placement

    def admit(self, job: Job, slot: datetime | None, launch_id: str, now: datetime,
              plan: Plan, *, catching_up: bool = False, backfill: bool = False) -> None:
        """The overlap policy, for a slot (or a manual run) that is due now. Late
        slots of a ``catchup = "all"`` job that forbids or queues overlap wait
        behind each other, in slot order, each within its starting deadline;
        so do backfilled slots, with no deadline."""
        active, queued = job.active(), job.queued()
        policy = job.spec.concurrency
        kind = LaunchKind.BACKFILL if backfill else None
        if policy == "allow" or not (active or queued):
            self._launch(job, slot, launch_id, now, plan, kind)
        elif (backfill or (catching_up and job.spec.catchup == "all")) and policy in (
                "forbid", "queue"):
            blocker = (queued or active)[-1]
            why = "backfill" if backfill else "catch-up all"
            self._queue(job, slot, launch_id, now, plan, f"waiting for {blocker.launch_id} "
                        f"({why})", kind)
        elif policy == "replace":
            for record in active:
                self._stop(job, record, launch_id, now, plan)
            for record in queued:
                self._ledger.end(record, LaunchState.SKIPPED, Cause.REPLACED,
                                 f"replaced by {launch_id}", now, plan)
            self._launch(job, slot, launch_id, now, plan, kind)
        elif policy == "queue" and not queued:
            self._queue(job, slot, launch_id, now, plan, f"waiting for {active[0].launch_id}")
        else:
            blocker = queued[0] if queued and policy == "queue" else (active or queued)[0]
            reason = f"overlap: {blocker.launch_id} is {blocker.state.value}"
            self._skip(job, slot, launch_id, reason, now, plan)

    def _queue(self, job: Job, slot: datetime | None, launch_id: str, now: datetime,
               plan: Plan, reason: str, kind: LaunchKind | None = None) -> None:
        record = self._ledger.new_record(job, slot, launch_id, LaunchState.QUEUED, now,
                                         cause=Cause.WAITING_FOR_RUN, reason=reason)
        if kind is not None:
            record = record.model_copy(update={"kind": kind})
        else:
            job.gap = None  # a slot after the job's span: it grows no more
        self._ledger.add(job, record)
        plan.write(record, create=True)

    def _launch(self, job: Job, slot: datetime | None, launch_id: str, now: datetime,
                plan: Plan, kind: LaunchKind | None = None) -> None:
        record = self._ledger.new_record(job, slot, launch_id, LaunchState.LAUNCHING, now)
        if kind is not None:
            record = record.model_copy(update={"kind": kind})
        else:
            job.gap = None
        self._ledger.add(job, record)
        plan.created.add(launch_id)
        self._placement.dispatch(record, now, plan)

    def _skip(self, job: Job, slot: datetime | None, launch_id: str, reason: str,
              now: datetime, plan: Plan) -> None:
        if slot is None:
            record = self._ledger.new_record(job, None, launch_id, LaunchState.SKIPPED, now,
                                             cause=Cause.OVERLAP, reason=reason)
            plan.write(record.model_copy(update={"ended_at": now}), create=True)
        else:
            slots.record_gap(self._ledger, job, slot, LaunchState.SKIPPED, Cause.OVERLAP,
                             reason, now, plan)

    def start_attempt(self, record: LaunchRecord, attempt: int, now: datetime, plan: Plan,
                      reason: str = "", idempotency_key: str | None = None) -> None:
        job = self._ledger.jobs.get(record.job)
        executor = job.spec.executor if job else record.executor
        started = record.model_copy(update={
            "state": LaunchState.LAUNCHING, "attempt": attempt,
            "run_id": run_id_for(record.launch_id, attempt), "intent_at": now,
            "fence": self._ledger.fence, "replica": self._ledger.replica, "retry_at": None,
            "started_at": None, "ended_at": None, "exit_code": None, "signal": None,
            "pid": None, "worker": None, "reason": reason, "cause": None,
            "idempotency_key": idempotency_key,
            "executor": executor, "location": self._ledger.location(executor)})
        self._placement.dispatch(started, now, plan)

    def retry(self, launch_id: str, now: datetime, plan: Plan) -> None:
        record = self._ledger.find(launch_id)
        if record is None or record.state is not LaunchState.RETRYING:
            return
        if record.retry_at is not None and record.retry_at > now:
            return
        self.start_attempt(record, record.attempt + 1, now, plan)

    def _stop(self, job: Job, record: LaunchRecord, by: str, now: datetime,
              plan: Plan) -> None:
        if record.state is LaunchState.RETRYING:
            self._ledger.end(record, LaunchState.STOPPED, Cause.REPLACED, f"replaced by {by}",
                             now, plan)
        elif record.launch_id not in job.replacing:
            job.replacing[record.launch_id] = by
            # Written, so that the stop is on the record, and so that whatever
            # the leader sends with it (a worker's stop request) is committed
            # with the decision.
            stopping = record.model_copy(update={"reason": f"stopping: replaced by {by}"})
            self._ledger.replace(stopping)
            plan.write(stopping)
            plan.stops.append(stopping)

    def release_queued(self, job: Job, now: datetime, plan: Plan) -> None:
        """The live run ended: the first slot queued behind it starts; those
        queued past their starting deadline are missed on the way. (A launch
        queued for a worker waits for a worker, not for this.)"""
        behind = [r for r in job.queued() if r.cause is Cause.WAITING_FOR_RUN]
        behind.sort(key=lambda r: r.slot or r.intent_at or now)
        deadline = starting_deadline(job.spec)
        for record in behind:
            if (deadline is not None and record.slot is not None
                    and record.kind is not LaunchKind.BACKFILL
                    and now - record.slot > deadline):
                self._ledger.end(record, LaunchState.MISSED, Cause.DEADLINE, "waited in the "
                                 "queue past its starting deadline", now, plan)
            else:
                self.start_attempt(record, 1, now, plan)
                return
