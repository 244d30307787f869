"""One term of leadership: take the state, reconcile, then launch.

The term starts from the replica's state mirror (:mod:`distcron.replica.mirror`)
once it has caught up with the fence, and follows the mirror's changes (jobs,
triggers, workers, reports) from there. It runs one loop that owns the
scheduler core. Everything that changes the core (a tick, a job edit, a
trigger, a run that started or ended) goes through that loop as an event, and
each round's decisions are committed in transactions guarded by the fence
*before* any executor is asked to start or stop a run.

On failure:

- A guarded write rejected, or the lease no longer certainly valid: the term
  ends with :class:`~distcron.errors.NotLeader` and launches nothing more.
  Runs already started go on (local runs are detached); the next leader adopts
  them.
- The store unreachable, or the mirror's watch lost: the term ends
  (``StoreUnavailable``, or the watch's error) and the replica campaigns
  again; the mirror re-reads what was committed.
- An executor that cannot start a run: the run is recorded ``failed`` with the
  reason, and retried if the job asks for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from datetime import datetime
from typing import Any

from distcron.clock import Clock
from distcron.errors import CommitRejected, ExecutorError, NotLeader, StoreUnavailable
from distcron.executors.base import Executor, HttpCall, LaunchRequest, RunState, RunStatus
from distcron.jobs import JobSpec
from distcron.metrics import Metrics
from distcron.replica.agents import (
    apply_report,
    lost_cleanup,
    parse_report,
    parse_worker,
    worker_ops,
)
from distcron.replica.commit import commit
from distcron.replica.mirror import StateMirror, Subscription
from distcron.replica.outcomes import OUTCOMES
from distcron.replica.reconcile import reconcile
from distcron.replica.retention import (
    DEFAULT_HISTORY,
    PRUNE_EVERY,
    RUN_DIR_RETENTION,
    prune_job_history,
)
from distcron.replica.snapshot import Snapshot
from distcron.scheduler.core import SchedulerCore, merge
from distcron.scheduler.plan import Plan
from distcron.scheduler.policy import Policy
from distcron.scheduler.records import LaunchRecord, LaunchState
from distcron.store import Event, Op, Put, Store
from distcron.store.layout import (
    CURSORS,
    JOBS,
    REPORTS,
    TRIGGERS,
    WORKERS,
    launch_key,
    name_of,
    output_key,
    parse_cursor,
)
from distcron.worker.protocol import Report, WorkerInfo

log = logging.getLogger("distcron.leader")

# Jobs loaded between two yields to the event loop at the start of a term.
_LOAD_BATCH = 500

# Process starts at once: a thousand jobs due together must not fork a thousand
# supervisors in the same instant.
START_CONCURRENCY = 32


# Something that changes the core, applied in the loop at ``now``; returns its plan.
_Event = Callable[[datetime], Awaitable[Plan]]


class LeaderTerm:
    def __init__(self, store: Store, mirror: StateMirror, executors: Mapping[str, Executor],
                 fence: int, replica_id: str,
                 clock: Clock, metrics: Metrics, lease_valid: Callable[[], bool],
                 history: int = DEFAULT_HISTORY, catch_up_timeout: float = 3.0) -> None:
        self.store = store
        self.mirror = mirror
        self.catch_up_timeout = catch_up_timeout
        self.executors = executors
        self.fence = fence
        self.replica_id = replica_id
        self.clock = clock
        self.metrics = metrics
        self.lease_valid = lease_valid
        # Each job's spec as stored (JSON), read in full only to launch it.
        self.specs: dict[str, bytes] = {}
        local = executors.get("local")
        self.core = SchedulerCore(fence, replica_id, local.location if local else None)
        self._events: deque[_Event] = deque()
        self._wakeup = asyncio.Event()
        # More writes by launch id, committed with the launch's record: a run's
        # output, a worker's assignment, the clean-up of a worker's keys.
        self._extra: dict[str, list[Op]] = {}
        self._workers: dict[str, WorkerInfo] = {}
        self._failure: BaseException | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._starts = asyncio.Semaphore(START_CONCURRENCY)
        self._gap_counts: dict[str, tuple[str, int]] = {}
        self.history = history
        self._written: dict[str, int] = {}  # records created per job since its last prune
        self._pruned_runs_at = clock.monotonic()

    async def run(self) -> None:
        """Lead until leadership is lost (raises NotLeader) or the task is cancelled."""
        try:
            async with asyncio.timeout(self.catch_up_timeout):
                # Everything committed before this term began has a lower revision
                # than the leader key: the mirror has seen it all once past the fence.
                await self.mirror.caught_up(self.fence)
        except TimeoutError:
            raise StoreUnavailable(f"the state mirror did not reach revision {self.fence} "
                                   f"in {self.catch_up_timeout} s") from None
        state = self.mirror.snapshot()
        changes = self.mirror.subscribe()
        try:
            await self._load(state)
            self._spawn(self._follow(changes), "follow-changes", critical=True)
            await self._loop()
        finally:
            self.mirror.unsubscribe(changes)
            self.metrics.worker_running.clear()  # another replica reports them now
            for task in self._tasks:
                task.cancel()
            for task in list(self._tasks):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    # -- start of term ---------------------------------------------------------

    async def _load(self, state: Snapshot) -> None:
        now = self.clock.now()
        for launch_id in state.missing:
            kv = await self.store.get(launch_key(launch_id))
            if kv is not None:
                state.records.append(LaunchRecord.from_json(kv.value))
        plans = []
        for count, (name, raw) in enumerate(state.jobs.items()):
            if count % _LOAD_BATCH == 0:
                # Let the lease keepalive run: loading 100,000 jobs takes seconds.
                await asyncio.sleep(0)
            try:
                spec = JobSpec.from_json(raw, source=name)
                plans.append(self.core.set_job(Policy.of(spec), state.cursors.get(name), now))
                self.specs[name] = raw
            except ValueError as exc:
                log.error("event=job_rejected job=%s error=%r", name, str(exc))
        for record in state.records:
            self.core.restore(record, now)
        self.metrics.jobs_loaded.set(len(self.specs))
        plans.append(await reconcile(self.core, self.executors, self._follow_run, now))
        for run_id, raw in state.reports.items():
            report = parse_report(run_id, raw)
            if report is not None:
                plans.append(apply_report(self.core, run_id, report, now, self._extra))
        for name, raw in state.workers.items():
            if (info := parse_worker(name, raw)) is not None:
                self._workers[name] = info
        plans.append(self._set_workers(now))
        # Triggers written while no leader was there to consume them.
        for trigger_id, raw in state.triggers.items():
            self._on_trigger(trigger_id, raw)
        await self._commit(merge(plans), self._take_extra())
        log.info("event=term_started fence=%d jobs=%d live=%d revision=%d", self.fence,
                 len(self.specs), len(state.records), state.revision)

    # -- the loop ----------------------------------------------------------------

    async def _loop(self) -> None:
        while True:
            if self._failure is not None:
                raise self._failure
            now = self.clock.now()
            # Events first: a run that ended must not make a due slot look overlapped.
            plans = []
            while self._events:
                plans.append(await self._events.popleft()(now))
            plans.append(self.core.tick(now))
            await self._commit(merge(plans), self._take_extra())
            await self._wait_for_work()

    def _take_extra(self) -> dict[str, list[Op]]:
        extra, self._extra = self._extra, {}
        return extra

    async def _wait_for_work(self) -> None:
        self._wakeup.clear()
        if self._events or self._failure is not None:
            return
        wake = self.core.next_wakeup()
        timeout = None if wake is None else (wake - self.clock.now()).total_seconds()
        if timeout is not None and timeout <= 0:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._wakeup.wait()

    async def _commit(self, plan: Plan, extra: dict[str, list[Op]] | None = None) -> None:
        if not plan:
            return
        if not self.lease_valid():
            raise NotLeader(self.replica_id, self.fence)
        extra = extra or {}
        lost_cleanup(plan, extra)
        worker_ops(plan, extra, self.request_for)
        started = self.clock.monotonic()
        try:
            revision = await commit(self.store, self.fence, plan, extra)
        except CommitRejected as exc:
            self.metrics.guarded_write_failures.labels(reason="rejected").inc()
            log.warning("event=guarded_write_rejected fence=%d error=%r", self.fence, str(exc))
            raise NotLeader(self.replica_id, self.fence) from exc
        self.metrics.guarded_write.observe(self.clock.monotonic() - started)
        self.metrics.store_revision.set(revision)
        self._observe(plan)
        for record in plan.starts:
            if record.executor != "agent":  # a worker starts what is assigned to it
                self._spawn(self._start(record), f"start {record.run_id}")
        for record in plan.stops:
            self._spawn(self._stop(record), f"stop {record.run_id}")

    def _observe(self, plan: Plan) -> None:
        for record in plan.records.values():
            self._log_record(record, record.launch_id in plan.created)
            if record.state in (LaunchState.SKIPPED, LaunchState.MISSED):
                # A span grows in place: count only the slots it gained.
                known_id, known = self._gap_counts.get(record.job, ("", 0))
                added = record.count - (known if known_id == record.launch_id else 0)
                self._gap_counts[record.job] = (record.launch_id, record.count)
                if record.state is LaunchState.SKIPPED:
                    reason = "paused" if "paused" in record.reason else "overlap"
                    self.metrics.slots_skipped.labels(job=record.job, reason=reason).inc(added)
                else:
                    self.metrics.slots_missed.labels(job=record.job).inc(added)
            elif record.state is LaunchState.UNKNOWN:
                self.metrics.launches_unknown.labels(job=record.job).inc()
            elif record.state is LaunchState.LOST:
                self.metrics.launches_lost.labels(job=record.job).inc()
            if not record.state.live and record.state.launched:
                self.metrics.launches.labels(job=record.job, outcome=record.state.value).inc()
                if record.started_at and record.ended_at:
                    self.metrics.run_duration.labels(job=record.job).observe(
                        (record.ended_at - record.started_at).total_seconds())
        committed_at = self.clock.now()
        for record in plan.starts:
            if record.slot is not None and record.attempt == 1:
                self.metrics.launch_lag.observe((committed_at - record.slot).total_seconds())
        self._schedule_pruning(plan)

    def _schedule_pruning(self, plan: Plan) -> None:
        for launch_id in plan.created:
            job = launch_id.partition("@")[0]
            self._written[job] = self._written.get(job, 0) + 1
            if self._written[job] >= PRUNE_EVERY:
                self._written[job] = 0
                self._spawn(self._prune(job), f"prune {job}")
        if self.clock.monotonic() - self._pruned_runs_at > RUN_DIR_RETENTION.total_seconds() / 6:
            self._pruned_runs_at = self.clock.monotonic()
            self._spawn(self._prune_run_dirs(), "prune run directories")

    async def _prune(self, job: str) -> None:
        await prune_job_history(self.store, self.fence, job, self.history)

    async def _prune_run_dirs(self) -> None:
        for executor in self.executors.values():
            with contextlib.suppress(ExecutorError):
                await executor.prune(self.clock.now() - RUN_DIR_RETENTION)

    def _log_record(self, record: LaunchRecord, created: bool) -> None:
        log.info("event=%s launch_id=%s state=%s attempt=%d%s%s",
                 "launch_recorded" if created else "launch_updated", record.launch_id,
                 record.state.value, record.attempt,
                 f" count={record.count}" if record.count > 1 else "",
                 f" reason={record.reason!r}" if record.reason else "")

    # -- runs ------------------------------------------------------------------

    def executor_for(self, record: LaunchRecord) -> Executor:
        executor = self.executors.get(record.executor or "local")
        if executor is None:
            raise ExecutorError(f"launch {record.launch_id}: no {record.executor!r} executor "
                                "on this replica")
        return executor

    def request_for(self, record: LaunchRecord) -> LaunchRequest:
        raw = self.specs.get(record.job)
        if raw is None:
            raise ExecutorError(f"job {record.job!r} is no longer defined")
        spec = JobSpec.from_json(raw, source=record.job)
        assert record.run_id is not None
        http = None
        if spec.executor == "http":  # the spec has no command, argv, env or workdir then
            assert spec.url is not None
            http = HttpCall(spec.url, spec.method or "POST", dict(spec.headers or {}),
                            spec.body)
        return LaunchRequest(
            launch_id=record.run_id, job=record.job, slot=record.slot, fence=self.fence,
            timeout=spec.timeout, idempotency_key=record.idempotency_key,
            command=spec.command, argv=spec.argv, env=dict(spec.env), workdir=spec.workdir,
            http=http)

    async def _start(self, record: LaunchRecord) -> None:
        assert record.run_id is not None
        async with self._starts:
            if not self.lease_valid():
                # Committed, but leadership may be gone: the next leader finds
                # the intent and starts it (idempotently) itself.
                return
            try:
                executor = self.executor_for(record)
                status = await executor.start(self.request_for(record))
            except ExecutorError as exc:
                log.warning("event=start_failed launch_id=%s error=%r", record.launch_id,
                            str(exc))
                self._post_end(record.launch_id, RunStatus.failed(record.run_id, str(exc)))
                return
        await self._follow_run(executor, record.launch_id, status)

    async def _follow_run(self, executor: Executor, launch_id: str, status: RunStatus) -> None:
        """Record that a run started, then wait for its end and record that."""
        if status.state is RunState.RUNNING:
            self._post(functools.partial(self._run_started, executor, launch_id, status))
            self._spawn(self._wait(executor, launch_id, status.launch_id),
                        f"wait {status.launch_id}")
        else:
            self._post_end(launch_id, status, executor)

    async def _run_started(self, executor: Executor, launch_id: str, status: RunStatus,
                           now: datetime) -> Plan:
        log.info("event=run_started launch_id=%s pid=%s", launch_id, status.pid)
        return self.core.run_started(launch_id, status.started_at or now,
                                     pid=status.pid, worker=executor.worker_name)

    async def _wait(self, executor: Executor, launch_id: str, run_id: str) -> None:
        status = await executor.wait(run_id)
        self._post_end(launch_id, status, executor)

    def _post_end(self, launch_id: str, status: RunStatus,
                  executor: Executor | None = None) -> None:
        async def apply(now: datetime) -> Plan:
            outcome = OUTCOMES.get(status.state, LaunchState.UNKNOWN)
            log.info("event=run_ended launch_id=%s state=%s exit_code=%s", launch_id,
                     outcome.value, status.exit_code)
            output = await self._output(executor, status.launch_id) if executor else b""
            if output:
                self._extra.setdefault(launch_id, []).append(Put(output_key(launch_id), output))
            return self.core.run_ended(
                launch_id, outcome, now, exit_code=status.exit_code, signal=status.signal,
                started_at=status.started_at, ended_at=status.ended_at, reason=status.reason)
        self._post(apply)

    async def _output(self, executor: Executor, run_id: str) -> bytes:
        try:
            return await executor.output(run_id)
        except ExecutorError:
            return b""

    async def _stop(self, record: LaunchRecord) -> None:
        assert record.run_id is not None
        if record.executor == "agent":
            # The stop request was committed with the record (worker_ops in
            # _commit): the worker stops the run and reports its end.
            log.info("event=run_stop_requested launch_id=%s worker=%s", record.launch_id,
                     record.worker)
            return
        log.info("event=run_stopping launch_id=%s", record.launch_id)
        with contextlib.suppress(ExecutorError):
            await self.executor_for(record).stop(record.run_id)

    # -- watched changes -----------------------------------------------------------

    async def _follow(self, changes: Subscription) -> None:
        async for batch in changes:
            workers_changed = False
            for event in batch.events:
                key = event.kv.key
                if key.startswith(JOBS):
                    self._on_job(name_of(key, JOBS), event)
                elif key.startswith(TRIGGERS) and event.type == "put":
                    self._on_trigger(name_of(key, TRIGGERS), event.kv.value)
                elif key.startswith(WORKERS):
                    self._on_worker(name_of(key, WORKERS), event)
                    workers_changed = True
                elif key.startswith(REPORTS) and event.type == "put":
                    run_id = name_of(key, REPORTS)
                    report = parse_report(run_id, event.kv.value)
                    if report is not None:
                        self._post(functools.partial(self._reported, run_id, report))
            if workers_changed:
                self._post(self._workers_changed)

    def _on_job(self, name: str, event: Event) -> None:
        if event.type == "delete":
            self._post(functools.partial(self._remove_job, name))
            return
        try:
            spec = JobSpec.from_json(event.kv.value, source=name)
        except ValueError as exc:
            log.error("event=job_rejected job=%s error=%r", name, str(exc))
            return
        self._post(functools.partial(self._set_job, spec, event.kv.value))

    async def _set_job(self, spec: JobSpec, raw: bytes, now: datetime) -> Plan:
        cursor = None
        if spec.name not in self.specs:
            # The mirror has applied at least the revision of this job's change.
            raw_cursor = self.mirror.held(CURSORS).get(spec.name)
            cursor = parse_cursor(raw_cursor) if raw_cursor else None
        plan = self.core.set_job(Policy.of(spec), cursor, now)
        self.specs[spec.name] = raw
        self.metrics.jobs_loaded.set(len(self.specs))
        log.info("event=job_loaded job=%s paused=%s", spec.name, spec.paused)
        return plan

    async def _remove_job(self, name: str, now: datetime) -> Plan:
        self.specs.pop(name, None)
        self.metrics.jobs_loaded.set(len(self.specs))
        log.info("event=job_removed job=%s", name)
        return self.core.remove_job(name, now)

    def _on_worker(self, name: str, event: Event) -> None:
        info = parse_worker(name, event.kv.value) if event.type == "put" else None
        if info is None:
            self._workers.pop(name, None)
        else:
            self._workers[name] = info

    async def _workers_changed(self, now: datetime) -> Plan:
        plans = []
        gone = [r for r in self.core.live_records() if r.executor == "agent"
                and r.worker is not None and r.worker not in self._workers]
        reports = self.mirror.held(REPORTS)
        for record in gone:
            # A worker may report an end and die before that report's event is handled.
            run_id = record.run_id or record.launch_id
            raw = reports.get(run_id)
            report = parse_report(run_id, raw) if raw is not None else None
            if report is not None:
                plans.append(apply_report(self.core, run_id, report, now,
                                          self._extra))
        plans.append(self._set_workers(now))
        return merge(plans)

    def _set_workers(self, now: datetime) -> Plan:
        plan = self.core.set_workers(self._workers, now)
        self.metrics.workers.set(len(self._workers))
        self.metrics.worker_running.clear()
        for name, info in self._workers.items():
            self.metrics.worker_running.labels(worker=name).set(info.running)
        return plan

    async def _reported(self, run_id: str, report: Report, now: datetime) -> Plan:
        return apply_report(self.core, run_id, report, now, self._extra)

    def _on_trigger(self, trigger_id: str, raw: bytes) -> None:
        try:
            body = json.loads(raw)
            job, launch_id = str(body["job"]), str(body["launch_id"])
        except (ValueError, KeyError, TypeError):
            log.error("event=trigger_rejected trigger=%s", trigger_id)
            return
        self._post(functools.partial(self._trigger, trigger_id, job, launch_id))

    async def _trigger(self, trigger_id: str, job: str, launch_id: str, now: datetime) -> Plan:
        plan = self.core.trigger(job, launch_id, now)
        plan.consumed_triggers.append(trigger_id)
        log.info("event=triggered job=%s launch_id=%s", job, launch_id)
        return plan

    # -- plumbing --------------------------------------------------------------

    def _post(self, event: _Event) -> None:
        self._events.append(event)
        self._wakeup.set()

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str, *,
               critical: bool = False) -> None:
        """Run ``coro`` beside the loop; a critical task that stops ends the term."""
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)

        def done(task: asyncio.Task[None]) -> None:
            self._tasks.discard(task)
            if task.cancelled():
                return
            error = task.exception()
            if error is not None:
                log.error("event=task_failed task=%s error=%r", name, str(error))
            if critical and self._failure is None:
                self._failure = error or NotLeader(self.replica_id, self.fence)
                self._wakeup.set()

        task.add_done_callback(done)
