"""One term of leadership: take the state, reconcile, then launch.

The term starts from the replica's state mirror (:mod:`distcron.replica.mirror`)
once it has caught up with the fence, and follows the mirror's changes (jobs,
triggers, workers, reports) from there. It runs one loop of *rounds*. Whatever
happened since the last round (a change in the store, a run that started or
ended) arrives as a typed input (:mod:`distcron.scheduler.inputs`); each round
hands them, with ``now``, to :class:`~distcron.scheduler.rounds.LeaderRounds`,
which returns one :class:`~distcron.scheduler.decision.Decision`. The loop logs
its notes, commits it in transactions guarded by the fence
(:mod:`distcron.replica.commit`), and only then asks executors to start, stop
or follow runs. Executors answer by posting inputs for the next round; nothing
else changes the decision.

On failure:

- A guarded write rejected, or the lease no longer certainly valid: the term
  ends with :class:`~distcron.errors.NotLeader` and launches nothing more.
  Runs already started go on (local runs are detached); the next leader adopts
  them.
- The store unreachable, or the mirror's watch lost: the term ends
  (``StoreUnavailable``, or the watch's error) and the replica campaigns
  again; the mirror re-reads what was committed.
- An executor that cannot start a run: the run is recorded ``failed`` with the
  reason, and retried if the job asks for it. One whose wait for a run keeps
  failing: the run is recorded ``unknown`` (its fate cannot be learnt here).
- Every task the term starts is its own: a task that fails unexpectedly is
  logged, and a run it was following is recorded ``unknown``; the task that
  follows the store's changes ending ends the term.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Mapping
from datetime import timedelta
from typing import Any

from distcron.bulk import collector_held
from distcron.clock import Clock
from distcron.errors import CommitRejected, NotLeader, StoreError, StoreUnavailable
from distcron.executors.base import Executor
from distcron.jobs.journal import settle_apply
from distcron.metrics import Metrics
from distcron.notify.delivery import Deliveries
from distcron.notify.senders import Smtp
from distcron.replica import watched
from distcron.replica.commit import commit
from distcron.replica.mirror import StateMirror, Subscription
from distcron.replica.observer import DecisionObserver, log_notes
from distcron.replica.reconcile import settle
from distcron.replica.retention import DEFAULT_HISTORY, prune_job_history
from distcron.replica.runs import LocalRuns
from distcron.replica.snapshot import Snapshot
from distcron.scheduler.decision import Decision
from distcron.scheduler.inputs import Input, RunUnknown, WorkersChanged
from distcron.scheduler.policy import STAGE_LEAD
from distcron.scheduler.records import LaunchRecord
from distcron.scheduler.rounds import LeaderRounds
from distcron.store import Store
from distcron.store.layout import NOTIFIERS, NOTIFY, RESTORED, launch_key
from distcron.worker.protocol import WorkerInfo

log = logging.getLogger("distcron.leader")

# Jobs loaded between two yields to the event loop at the start of a term.
_LOAD_BATCH = 200
# Seconds between the leader's looks at an apply in progress: one that made no
# step between two looks is finished (or dropped) by the leader.
APPLY_STALE = 2.0


class LeaderTerm:
    """One term of leadership (one fence): rounds of decisions, committed, then
    done (see the module docstring). Made for one term; discarded after it."""

    def __init__(self, store: Store, mirror: StateMirror, executors: Mapping[str, Executor],
                 fence: int, replica_id: str,
                 clock: Clock, metrics: Metrics, lease_valid: Callable[[], bool],
                 history: int = DEFAULT_HISTORY, catch_up_timeout: float = 3.0,
                 stage_lead: float = STAGE_LEAD, smtp: Smtp | None = None,
                 store_id: str = "") -> None:
        self.store = store
        self.mirror = mirror
        self.catch_up_timeout = catch_up_timeout
        self.executors = executors
        self.fence = fence
        self.replica_id = replica_id
        self.clock = clock
        self.metrics = metrics
        self.lease_valid = lease_valid
        self.history = history
        local = executors.get("local")
        self.rounds = LeaderRounds(
            fence, replica_id, local.location if local else None,
            stage_lead=timedelta(seconds=stage_lead),
            # Launches on worker agents stage too: their workers prepare them.
            staging_executors=frozenset(n for n, e in executors.items() if e.stages) | {"agent"},
            store_id=store_id,
            other_locations={n: e.location for n, e in executors.items()
                             if n != "local" and e.location is not None})
        self._runs = LocalRuns(store, executors, fence, lease_valid, clock, self._post,
                               self._spawn)
        self._observer = DecisionObserver(metrics)
        self._deliveries = Deliveries(store, fence, lambda: mirror.held(NOTIFIERS), smtp,
                                      clock, metrics)
        self._inputs: list[Input] = []
        self._wakeup = asyncio.Event()
        self._failure: BaseException | None = None
        self._tasks: set[asyncio.Task[None]] = set()

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
            await self._start_term(state)
            self._spawn(self._follow_store(changes), "follow-changes", critical=True)
            self._spawn(self._deliveries.run(), "deliver-notifications")
            self._spawn(self._finish_applies(), "finish-applies")
            await self._loop()
        finally:
            self.mirror.unsubscribe(changes)
            self.metrics.worker_running.clear()  # another replica reports them now
            await self._runs.close()
            for task in self._tasks:
                task.cancel()
            for task in list(self._tasks):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    # -- start of term ---------------------------------------------------------

    async def _start_term(self, state: Snapshot) -> None:
        now = self.clock.now()
        for launch_id in state.missing:
            kv = await self.store.get(launch_key(launch_id))
            if kv is not None:
                state.records.append(LaunchRecord.from_json(kv.value))
        jobs = list(state.jobs.items())
        with collector_held():
            for start in range(0, len(jobs), _LOAD_BATCH):
                # Let the lease keepalive run: loading 100,000 jobs takes seconds.
                await asyncio.sleep(0)
                self.rounds.load([watched.job_input(name, raw, state.cursors.get(name))
                                  for name, raw in jobs[start:start + _LOAD_BATCH]], now)
        self.rounds.restore(state.records, now)
        for name, value in state.notifications.items():
            self._deliveries.offer(NOTIFY + name, value)
        self.rounds.load_marks(watched.release_marks(state.released), now)
        marker = await self.store.get(RESTORED)
        inputs: list[Input] = [
            # First: what the restore says must not run must not look due.
            *([watched.restored_input(marker.value, now)] if marker is not None else []),
            *await settle(self.rounds.to_settle(), self.executors),
            *watched.held_reports(state.reports),
            watched.workers_input(state.workers, state.reports),
            # Triggers written while no leader was there to consume them.
            *watched.held_triggers(state.triggers)]
        await self._round(inputs)
        log.info("event=term_started fence=%d jobs=%d live=%d revision=%d", self.fence,
                 len(self.rounds.templates), len(state.records), state.revision)

    # -- the loop ----------------------------------------------------------------

    async def _loop(self) -> None:
        while True:
            if self._failure is not None:
                raise self._failure
            # Inputs first: a run that ended must not make a due slot look overlapped.
            inputs, self._inputs = self._inputs, []
            await self._round(inputs)
            await self._wait_for_work()

    async def _round(self, inputs: list[Input]) -> None:
        for item in inputs:
            if isinstance(item, WorkersChanged):
                self._gauge_workers(item)
        decision = self.rounds.decide(inputs, self.clock.now())
        log_notes(decision)
        if decision.writes():
            await self._commit(decision)
        self._act(decision)
        self._gauge_jobs()

    async def _wait_for_work(self) -> None:
        self._wakeup.clear()
        if self._inputs or self._failure is not None:
            return
        wake = self.rounds.next_wakeup()
        timeout = None if wake is None else (wake - self.clock.now()).total_seconds()
        if timeout is not None and timeout <= 0:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._wakeup.wait()

    async def _commit(self, decision: Decision) -> None:
        if not self.lease_valid():
            raise NotLeader(self.replica_id, self.fence)
        started = self.clock.monotonic()
        try:
            revision = await commit(self.store, self.fence, decision, self.clock.now())
        except CommitRejected as exc:
            self.metrics.guarded_write_failures.labels(reason="rejected").inc()
            log.warning("event=guarded_write_rejected fence=%d error=%r", self.fence, str(exc))
            raise NotLeader(self.replica_id, self.fence) from exc
        self.metrics.guarded_write.observe(self.clock.monotonic() - started)
        self.metrics.store_revision.set(revision)
        self._observer.committed(decision, self.clock.now())

    def _act(self, decision: Decision) -> None:
        """What the committed decision asks of this replica."""
        self._runs.act(decision)
        for run in decision.stop_requests:
            # Committed with the record: the worker stops the run and reports its end.
            log.info("event=run_stop_requested launch_id=%s worker=%s", run.launch_id,
                     run.worker)
        for job in decision.prunes:
            self._spawn(self._prune(job), f"prune {job}")

    def _gauge_workers(self, change: WorkersChanged) -> None:
        self.metrics.workers.set(len(change.workers))
        self.metrics.worker_running.clear()
        for name, info in change.workers.items():
            if isinstance(info, WorkerInfo):
                self.metrics.worker_running.labels(worker=name).set(info.running)

    def _gauge_jobs(self) -> None:
        self.metrics.jobs_loaded.set(len(self.rounds.templates))
        self.metrics.jobs_quarantined.set(len(self.rounds.core.quarantined))

    async def _finish_applies(self) -> None:
        """Complete an apply whose applier is gone (see :mod:`distcron.jobs.journal`):
        one that made no step in :data:`APPLY_STALE` seconds."""
        seen: bytes | None = None
        at_start = True
        while True:
            try:
                seen = await settle_apply(self.store, seen, at_start=at_start)
                at_start = False
            except StoreError as exc:
                log.warning("event=apply_check_failed error=%r", str(exc))
            await asyncio.sleep(APPLY_STALE)

    async def _prune(self, job: str) -> None:
        await prune_job_history(self.store, self.fence, job, self.history)

    # -- the store's changes ---------------------------------------------------------

    async def _follow_store(self, changes: Subscription) -> None:
        async for batch in changes:
            for event in batch.events:
                if event.kv.key.startswith(NOTIFY):
                    if event.type == "put":
                        self._deliveries.offer(event.kv.key, event.kv.value)
                    else:
                        self._deliveries.withdraw(event.kv.key)
            inputs = list(watched.changes(batch, self.mirror))
            if inputs:
                self._inputs.extend(inputs)
                self._wakeup.set()

    # -- plumbing --------------------------------------------------------------

    def _post(self, item: Input) -> None:
        self._inputs.append(item)
        self._wakeup.set()

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str, *,
               critical: bool = False, following: str | None = None) -> None:
        """Run ``coro`` beside the loop; a critical task that stops ends the term.
        A task ``following`` a launch that fails leaves the launch ``unknown``."""
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)

        def done(task: asyncio.Task[None]) -> None:
            self._tasks.discard(task)
            if task.cancelled():
                return
            error = task.exception()
            if error is not None:
                log.error("event=task_failed task=%s error=%r", name, str(error),
                          exc_info=error)
                if following is not None:
                    self._post(RunUnknown(following, f"the leader's task failed: {error}"))
            if critical and self._failure is None:
                self._failure = error or NotLeader(self.replica_id, self.fence)
                self._wakeup.set()

        task.add_done_callback(done)
