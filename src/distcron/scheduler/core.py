"""The scheduler core: which slots to launch, skip or mark missed, and when.

Pure logic. Every method takes ``now`` and returns a :class:`Plan`; nothing
here reads a clock, touches the store or starts a process. The runtime commits
each plan in a transaction guarded by the leader's fence and only then starts
or stops runs. When a commit fails the runtime discards this object and builds
a new one from the store, so the core never has to undo a decision.

Each job keeps its *cursor*, the last slot already accounted for. A job's
slots after the cursor are visited in order and each ends in exactly one
record: launched, queued, skipped (overlap or pause) or missed (starting
deadline or catch-up). Consecutive slots skipped or missed for the same reason
share one record that spans them.

The core wakes only for the job whose next slot is earliest (a heap keyed by
time), never by polling every job.
"""

from __future__ import annotations

import heapq
import itertools
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from distcron.cron import Schedule, parse
from distcron.scheduler.plan import Plan
from distcron.scheduler.policy import (
    MAX_BACKLOG_SLOTS,
    ON_TIME_TOLERANCE,
    PAUSED_ACCOUNTING_INTERVAL,
    PLACEMENT_RETRY,
    WORKER_GRACE,
    JobPolicy,
    WorkerView,
    retry_delay,
    starting_deadline,
)
from distcron.scheduler.records import (
    LaunchKind,
    LaunchRecord,
    LaunchState,
    launch_id_for,
    run_id_for,
)
from distcron.store.layout import Cursor

_ACTIVE = (LaunchState.LAUNCHING, LaunchState.RUNNING, LaunchState.RETRYING)
_FAILED = (LaunchState.FAILED, LaunchState.TIMED_OUT)

_REASON_PAUSED = "the job is paused"
_REASON_DEADLINE = "past its starting deadline"
_REASON_NO_CATCHUP = "fell due while no leader ran (catch-up none)"
_REASON_SUPERSEDED = "a later slot runs instead (catch-up last)"
_REASON_NO_WORKER = "waiting for a worker"
_REASON_NO_WORKER_IN_TIME = "no worker could take it before its starting deadline"


@dataclass(slots=True)
class _Job:
    spec: JobPolicy
    schedule: Schedule
    cursor: datetime
    live: dict[str, LaunchRecord] = field(default_factory=dict)
    gap: LaunchRecord | None = None  # the skipped/missed span that may still grow
    replacing: dict[str, str] = field(default_factory=dict)  # live id -> id replacing it
    version: int = 0  # heap entries of older versions are stale

    def active(self) -> list[LaunchRecord]:
        return [r for r in self.live.values() if r.state in _ACTIVE]

    def queued(self) -> list[LaunchRecord]:
        return [r for r in self.live.values() if r.state is LaunchState.QUEUED]


class SchedulerCore:
    """The leader's decisions, for one term of leadership (one fence)."""

    def __init__(self, fence: int, replica: str, local_location: str | None = None) -> None:
        self.fence = fence
        self.replica = replica
        # Written into the intent of every local run, so a later leader knows
        # whether its own executor can tell what became of the run.
        self.local_location = local_location
        self._jobs: dict[str, _Job] = {}
        # Live records of jobs removed while they ran: still tracked to their end.
        self._orphans: dict[str, LaunchRecord] = {}
        self._heap: list[tuple[float, int, str, str, int]] = []
        self._seq = itertools.count()
        self._workers: dict[str, WorkerView] = {}
        # Jobs with live records: a leader of many jobs visits only these.
        self._with_live: set[str] = set()
        self._vanished: dict[str, datetime] = {}  # worker -> when its registration went

    # -- the job set -------------------------------------------------------

    def set_job(self, spec: JobPolicy, cursor: Cursor | None, now: datetime) -> Plan:
        """Add a job, or apply an edit to one. A new job without a stored cursor
        owns the slots after ``now``. Raises CronSyntaxError for a bad schedule."""
        plan = Plan()
        schedule = parse(spec.schedule, tz=spec.timezone, job=spec.name)
        job = self._jobs.get(spec.name)
        if job is None:
            job = _Job(spec, schedule, cursor.slot if cursor else now)
            self._jobs[spec.name] = job
            if cursor is None:
                plan.cursors[spec.name] = Cursor(job.cursor)
        else:
            if job.spec.paused and not spec.paused:
                # Slots that fell due while paused are the pause's, not catch-up's.
                self._account(job, now, plan, until=now)
            job.spec, job.schedule = spec, schedule
        self._wake(job, now)
        return plan

    def remove_job(self, name: str, now: datetime) -> Plan:
        """Forget a job. Its live runs finish and are recorded; what waits
        (queued, retrying) is dropped with a reason."""
        plan = Plan()
        job = self._jobs.pop(name, None)
        self._with_live.discard(name)
        if job is None:
            return plan
        for record in job.live.values():
            if record.state is LaunchState.QUEUED:
                self._end(record, LaunchState.SKIPPED, "the job was removed", now, plan)
            elif record.state is LaunchState.RETRYING:
                self._end(record, LaunchState.STOPPED, "the job was removed", now, plan)
            else:
                self._orphans[record.launch_id] = record
        return plan

    def restore(self, record: LaunchRecord, now: datetime) -> None:
        """Take back a record found in the store at takeover: a live one is
        tracked again, a span is continued if it ends at the job's cursor."""
        job = self._jobs.get(record.job)
        if job is None:
            if record.state.live:
                self._orphans[record.launch_id] = record
            return
        if record.state.live:
            self._add_live(job, record)
            if record.state is LaunchState.RETRYING and record.retry_at is not None:
                self._push(record.retry_at, "retry", record.launch_id, 0)
        elif (record.state in (LaunchState.SKIPPED, LaunchState.MISSED)
              and (record.until or record.slot) == job.cursor):
            job.gap = record

    def job(self, name: str) -> JobPolicy | None:
        job = self._jobs.get(name)
        return None if job is None else job.spec

    def live_record(self, launch_id: str) -> LaunchRecord | None:
        return self._find_live(launch_id)

    def live_records(self) -> Iterator[LaunchRecord]:
        for name in list(self._with_live):
            job = self._jobs.get(name)
            if job is not None:
                yield from list(job.live.values())
        yield from self._orphans.values()

    # -- workers ---------------------------------------------------------------

    def set_workers(self, workers: Mapping[str, WorkerView], now: datetime) -> Plan:
        """The registered worker agents changed. Runs on a worker that vanished
        are lost unless it comes back within WORKER_GRACE (a restart adopts
        them); launches waiting for a worker look for one again."""
        self._workers = dict(workers)
        for back in self._vanished.keys() & self._workers.keys():
            del self._vanished[back]
        for record in self.live_records():
            gone = record.worker
            if (record.executor == "agent" and gone is not None
                    and gone not in self._workers and gone not in self._vanished):
                self._vanished[gone] = now
                self._push(now + WORKER_GRACE, "vanished", gone, 0)
        plan = Plan()
        for record in list(self.live_records()):
            if _waiting_for_worker(record):
                self._place_again(record.launch_id, now, plan)
        return plan

    def _lose_runs(self, worker: str, now: datetime, plan: Plan) -> Plan:
        """The worker did not come back: what it was running is lost."""
        since = self._vanished.pop(worker, None)
        if since is None:
            return plan
        lost = [r.launch_id for r in self.live_records() if r.executor == "agent"
                and r.worker == worker
                and r.state in (LaunchState.LAUNCHING, LaunchState.RUNNING)]
        reason = f"worker {worker} vanished at {since.isoformat(timespec='seconds')}"
        return merge([plan, *(self.run_ended(launch_id, LaunchState.LOST, now, reason=reason)
                              for launch_id in lost)])

    def _choose_worker(self, spec: JobPolicy) -> str | None:
        """The eligible worker (its tags include the job's, a slot free) that is
        least busy: the share of its slots in use plus its machine's load."""
        busy = Counter(r.worker for r in self.live_records()
                       if r.executor == "agent" and r.worker is not None
                       and r.state in (LaunchState.LAUNCHING, LaunchState.RUNNING))
        needed = set(spec.tags)
        best: tuple[float, str] | None = None
        for worker in self._workers.values():
            used = busy[worker.id]
            if used >= worker.slots or not needed <= set(worker.tags):
                continue
            score = (used / worker.slots + worker.load, worker.id)
            if best is None or score < best:
                best = score
        return None if best is None else best[1]

    def _place_again(self, launch_id: str, now: datetime, plan: Plan) -> None:
        record = self._find_live(launch_id)
        job = self._jobs.get(record.job) if record is not None else None
        if record is None or job is None or not _waiting_for_worker(record):
            return
        deadline = starting_deadline(job.spec)
        since = record.slot or record.intent_at or now
        if deadline is not None and now - since > deadline:
            self._end(record, LaunchState.MISSED, _REASON_NO_WORKER_IN_TIME, now, plan)
        else:
            launching = record.model_copy(update={"state": LaunchState.LAUNCHING,
                                                  "reason": ""})
            self._dispatch(launching, now, plan)

    def _dispatch(self, record: LaunchRecord, now: datetime, plan: Plan) -> None:
        """Hand a launching record over: a launch on a worker agent first needs a
        worker, and waits (queued) while none can take it."""
        job = self._jobs.get(record.job)
        if record.executor == "agent" and job is not None:
            worker = self._choose_worker(job.spec)
            if worker is None:
                tags = f" with tags {', '.join(job.spec.tags)}" if job.spec.tags else ""
                record = record.model_copy(update={
                    "state": LaunchState.QUEUED, "reason": _REASON_NO_WORKER + tags})
                self._push(now + PLACEMENT_RETRY, "place", record.launch_id, 0)
            else:
                record = record.model_copy(update={"worker": worker})
        self._replace_live(record)
        plan.write(record)
        if record.state is LaunchState.LAUNCHING:
            plan.starts.append(record)

    # -- time ----------------------------------------------------------------

    def next_wakeup(self) -> datetime | None:
        """When :meth:`tick` next has something to do (stale entries are
        harmless: a tick for them does nothing)."""
        while self._heap and self._stale(self._heap[0]):
            heapq.heappop(self._heap)
        if not self._heap:
            return None
        return datetime.fromtimestamp(self._heap[0][0], UTC)

    def tick(self, now: datetime) -> Plan:
        """Everything due at ``now``: slots of jobs, and retries."""
        plan = Plan()
        limit = now.timestamp()
        while self._heap and self._heap[0][0] <= limit:
            entry = heapq.heappop(self._heap)
            if self._stale(entry):
                continue
            _, _, kind, key, _ = entry
            if kind == "job":
                job = self._jobs[key]
                self._account(job, now, plan, until=now)
                self._wake(job, now)
            elif kind == "place":
                self._place_again(key, now, plan)
            elif kind == "vanished":
                plan = self._lose_runs(key, now, plan)
            else:
                self._retry(key, now, plan)
        return plan

    # -- events ----------------------------------------------------------------

    def trigger(self, job_name: str, launch_id: str, now: datetime) -> Plan:
        """Run a job now, by hand. The overlap policy still applies: a manual
        run of a job that forbids overlap is skipped while another one runs."""
        plan = Plan()
        job = self._jobs.get(job_name)
        if job is not None:
            self._admit(job, None, launch_id, now, plan)
        return plan

    def run_started(self, launch_id: str, started_at: datetime, pid: int | None = None,
                    worker: str | None = None) -> Plan:
        plan = Plan()
        record = self._find_live(launch_id)
        if record is not None and record.state is LaunchState.LAUNCHING:
            started = record.model_copy(update={
                "state": LaunchState.RUNNING, "started_at": started_at, "pid": pid,
                "worker": worker or record.worker})
            self._replace_live(started)
            plan.write(started)
        return plan

    def run_ended(self, launch_id: str, outcome: LaunchState, now: datetime, *,
                  exit_code: int | None = None, signal: int | None = None,
                  started_at: datetime | None = None, ended_at: datetime | None = None,
                  reason: str = "") -> Plan:
        """A run ended (or its fate is settled: unknown, lost). Failed runs are
        retried when the job asks for it; a queued slot then gets its turn."""
        plan = Plan()
        record = self._find_live(launch_id)
        if record is None or record.state in (LaunchState.QUEUED, LaunchState.RETRYING):
            return plan
        job = self._jobs.get(record.job)
        if job is not None and launch_id in job.replacing:
            outcome = LaunchState.STOPPED
            reason = f"replaced by {job.replacing.pop(launch_id)}"
        update: dict[str, object] = {
            "exit_code": exit_code, "signal": signal, "ended_at": ended_at or now,
            "started_at": record.started_at or started_at, "reason": reason}
        if job is not None and outcome in _FAILED and record.attempt <= job.spec.retries:
            retry_at = (ended_at or now) + retry_delay(job.spec, record.attempt)
            update |= {"state": LaunchState.RETRYING, "retry_at": retry_at,
                       "reason": f"attempt {record.attempt} {outcome.value}"
                                 + (f": {reason}" if reason else "")}
            retrying = record.model_copy(update=update)
            self._replace_live(retrying)
            plan.write(retrying)
            self._push(retry_at, "retry", launch_id, 0)
        else:
            self._end(record.model_copy(update=update), outcome, None, now, plan)
        if job is not None and not job.active():
            self._release_queued(job, now, plan)
        return plan

    def relaunch(self, launch_id: str, now: datetime, reason: str) -> Plan:
        """Run a live record again as its next attempt under the same launch id
        (takeover found its fate unknown and the job is idempotent)."""
        plan = Plan()
        record = self._find_live(launch_id)
        if record is not None:
            self._start_attempt(record, record.attempt + 1, now, plan, reason,
                                idempotency_key=record.idempotency_key or record.run_id)
        return plan

    # -- decisions -------------------------------------------------------------

    def _account(self, job: _Job, now: datetime, plan: Plan, until: datetime) -> None:
        """Decide every slot of ``job`` in (cursor, until]."""
        slots = list(itertools.islice(self._due(job, until), MAX_BACKLOG_SLOTS + 1))
        if not slots:
            return
        if len(slots) > MAX_BACKLOG_SLOTS:
            # An outage far longer than the schedule's period: the oldest slots
            # can only be missed; count them as one span without visiting each.
            last = job.schedule.prev(until + timedelta(microseconds=1)).astimezone(UTC)
            self._gap(job, slots[0], LaunchState.MISSED, _REASON_DEADLINE, now, plan,
                      span_to=job.schedule.prev(last).astimezone(UTC),
                      count=MAX_BACKLOG_SLOTS)
            slots = [last]
        latest = slots[-1]
        for slot in slots:
            self._decide(job, slot, slot == latest, now, plan)
        job.cursor = latest
        plan.cursors[job.spec.name] = Cursor(latest, job.gap.launch_id if job.gap else None)

    def _due(self, job: _Job, until: datetime) -> Iterator[datetime]:
        for slot in job.schedule.iter(job.cursor):
            if slot > until:
                return
            yield slot.astimezone(UTC)

    def _decide(self, job: _Job, slot: datetime, latest: bool, now: datetime,
                plan: Plan) -> None:
        spec = job.spec
        lag = now - slot
        deadline = starting_deadline(spec)
        if spec.paused:
            self._gap(job, slot, LaunchState.SKIPPED, _REASON_PAUSED, now, plan)
        elif deadline is not None and lag > deadline:
            self._gap(job, slot, LaunchState.MISSED, _REASON_DEADLINE, now, plan)
        elif lag > ON_TIME_TOLERANCE and spec.catchup == "none":
            self._gap(job, slot, LaunchState.MISSED, _REASON_NO_CATCHUP, now, plan)
        elif lag > ON_TIME_TOLERANCE and spec.catchup == "last" and not latest:
            self._gap(job, slot, LaunchState.MISSED, _REASON_SUPERSEDED, now, plan)
        else:
            self._admit(job, slot, launch_id_for(spec.name, slot), now, plan)
        job.cursor = slot

    def _admit(self, job: _Job, slot: datetime | None, launch_id: str, now: datetime,
               plan: Plan) -> None:
        """The overlap policy, for a slot (or a manual run) that is due now."""
        active, queued = job.active(), job.queued()
        policy = job.spec.concurrency
        if policy == "allow" or not (active or queued):
            self._launch(job, slot, launch_id, now, plan)
        elif policy == "replace":
            for record in active:
                self._stop(job, record, launch_id, now, plan)
            for record in queued:
                self._end(record, LaunchState.SKIPPED, f"replaced by {launch_id}", now, plan)
            self._launch(job, slot, launch_id, now, plan)
        elif policy == "queue" and not queued:
            record = self._new_record(job, slot, launch_id, LaunchState.QUEUED, now,
                                      reason=f"waiting for {active[0].launch_id}")
            self._add_live(job, record)
            plan.write(record, create=True)
            job.gap = None
        else:
            blocker = queued[0] if queued and policy == "queue" else (active or queued)[0]
            reason = f"overlap: {blocker.launch_id} is {blocker.state.value}"
            self._skip(job, slot, launch_id, reason, now, plan)

    def _launch(self, job: _Job, slot: datetime | None, launch_id: str, now: datetime,
                plan: Plan) -> None:
        record = self._new_record(job, slot, launch_id, LaunchState.LAUNCHING, now)
        self._add_live(job, record)
        job.gap = None
        plan.created.add(launch_id)
        self._dispatch(record, now, plan)

    def _start_attempt(self, record: LaunchRecord, attempt: int, now: datetime, plan: Plan,
                       reason: str = "", idempotency_key: str | None = None) -> None:
        job = self._jobs.get(record.job)
        started = record.model_copy(update={
            "state": LaunchState.LAUNCHING, "attempt": attempt,
            "run_id": run_id_for(record.launch_id, attempt), "intent_at": now,
            "fence": self.fence, "replica": self.replica, "retry_at": None,
            "started_at": None, "ended_at": None, "exit_code": None, "signal": None,
            "pid": None, "reason": reason, "idempotency_key": idempotency_key,
            "executor": job.spec.executor if job else record.executor,
            "location": self._location(job.spec.executor if job else record.executor)})
        self._dispatch(started, now, plan)

    def _retry(self, launch_id: str, now: datetime, plan: Plan) -> None:
        record = self._find_live(launch_id)
        if record is None or record.state is not LaunchState.RETRYING:
            return
        if record.retry_at is not None and record.retry_at > now:
            return
        self._start_attempt(record, record.attempt + 1, now, plan)

    def _stop(self, job: _Job, record: LaunchRecord, by: str, now: datetime,
              plan: Plan) -> None:
        if record.state is LaunchState.RETRYING:
            self._end(record, LaunchState.STOPPED, f"replaced by {by}", now, plan)
        elif record.launch_id not in job.replacing:
            job.replacing[record.launch_id] = by
            # Written, so that the stop is on the record, and so that whatever
            # the runtime sends with it (a worker's stop request) is committed
            # with the decision.
            stopping = record.model_copy(update={"reason": f"stopping: replaced by {by}"})
            self._replace_live(stopping)
            plan.write(stopping)
            plan.stops.append(stopping)

    def _release_queued(self, job: _Job, now: datetime, plan: Plan) -> None:
        for record in job.queued()[:1]:
            deadline = starting_deadline(job.spec)
            if (deadline is not None and record.slot is not None
                    and now - record.slot > deadline):
                self._end(record, LaunchState.MISSED, "waited in the queue past its "
                          "starting deadline", now, plan)
            else:
                self._start_attempt(record, 1, now, plan)

    def _skip(self, job: _Job, slot: datetime | None, launch_id: str, reason: str,
              now: datetime, plan: Plan) -> None:
        if slot is None:
            record = self._new_record(job, None, launch_id, LaunchState.SKIPPED, now,
                                      reason=reason)
            plan.write(record.model_copy(update={"ended_at": now}), create=True)
        else:
            self._gap(job, slot, LaunchState.SKIPPED, reason, now, plan)

    def _gap(self, job: _Job, slot: datetime, state: LaunchState, reason: str,
             now: datetime, plan: Plan, *, span_to: datetime | None = None,
             count: int = 1) -> None:
        """Record ``slot`` (up to ``span_to``) as skipped or missed, growing the
        job's current span when it covers the slot just before."""
        gap = job.gap
        until = span_to or slot
        if (gap is not None and gap.state is state and gap.reason == reason
                and (gap.until or gap.slot) == job.cursor):
            grown = gap.model_copy(update={"until": until, "count": gap.count + count,
                                           "ended_at": now})
            plan.write(grown)
        else:
            grown = self._new_record(job, slot, launch_id_for(job.spec.name, slot), state,
                                     now, reason=reason)
            grown = grown.model_copy(update={
                "until": until if until != slot else None, "count": count, "ended_at": now})
            plan.write(grown, create=True)
        job.gap = grown
        job.cursor = until

    def _end(self, record: LaunchRecord, state: LaunchState, reason: str | None,
             now: datetime, plan: Plan) -> None:
        update: dict[str, object] = {"state": state, "ended_at": record.ended_at or now}
        if reason is not None:
            update["reason"] = reason
        ended = record.model_copy(update=update)
        job = self._jobs.get(record.job)
        if job is not None:
            job.live.pop(record.launch_id, None)
            if not job.live:
                self._with_live.discard(job.spec.name)
        self._orphans.pop(record.launch_id, None)
        plan.write(ended)

    def _new_record(self, job: _Job, slot: datetime | None, launch_id: str,
                    state: LaunchState, now: datetime, reason: str = "") -> LaunchRecord:
        return LaunchRecord(
            launch_id=launch_id, job=job.spec.name, slot=slot,
            kind=LaunchKind.SCHEDULED if slot is not None else LaunchKind.MANUAL,
            state=state, reason=reason, fence=self.fence, replica=self.replica,
            executor=job.spec.executor if state.launched else None,
            location=self._location(job.spec.executor) if state.launched else None,
            run_id=launch_id if state.launched else None, intent_at=now)

    def _location(self, executor: str | None) -> str | None:
        return self.local_location if executor == "local" else None

    # -- bookkeeping -----------------------------------------------------------

    def _find_live(self, launch_id: str) -> LaunchRecord | None:
        job_name = launch_id.partition("@")[0]
        job = self._jobs.get(job_name)
        if job is not None and launch_id in job.live:
            return job.live[launch_id]
        return self._orphans.get(launch_id)

    def _add_live(self, job: _Job, record: LaunchRecord) -> None:
        job.live[record.launch_id] = record
        self._with_live.add(job.spec.name)

    def _replace_live(self, record: LaunchRecord) -> None:
        job = self._jobs.get(record.job)
        if job is not None and record.launch_id in job.live:
            job.live[record.launch_id] = record
        elif record.launch_id in self._orphans:
            self._orphans[record.launch_id] = record

    def _wake(self, job: _Job, now: datetime) -> None:
        """Queue the job's next wake-up: its next slot, or for a paused job at
        most once a minute, to grow its "paused" span."""
        job.version += 1
        upcoming = job.schedule.next(job.cursor)
        when = upcoming
        if job.spec.paused:
            when = max(upcoming, now + PAUSED_ACCOUNTING_INTERVAL)
        self._push(when, "job", job.spec.name, job.version)

    def _push(self, when: datetime, kind: str, key: str, version: int) -> None:
        heapq.heappush(self._heap, (when.timestamp(), next(self._seq), kind, key, version))

    def _stale(self, entry: tuple[float, int, str, str, int]) -> bool:
        _, _, kind, key, version = entry
        if kind == "vanished":
            return key not in self._vanished
        if kind != "job":
            return self._find_live(key) is None
        job = self._jobs.get(key)
        return job is None or job.version != version


def _waiting_for_worker(record: LaunchRecord) -> bool:
    return record.state is LaunchState.QUEUED and record.reason.startswith(_REASON_NO_WORKER)


def merge(plans: Iterable[Plan]) -> Plan:
    """Several plans as one, later writes of a record winning."""
    merged = Plan()
    for plan in plans:
        for launch_id, record in plan.records.items():
            merged.write(record, create=launch_id in plan.created)
        merged.cursors.update(plan.cursors)
        merged.starts.extend(plan.starts)
        merged.stops.extend(plan.stops)
        merged.consumed_triggers.extend(plan.consumed_triggers)
    return merged
