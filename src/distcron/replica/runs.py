"""The runs this replica's executors hold during a term: started, staged and
released, followed to their end, stopped.

Everything here happens after the decision that asks for it is committed. What
the executors answer goes back to the leader's next round as inputs
(:mod:`distcron.scheduler.inputs`), through ``post``.

On failure: an executor that cannot start a run makes it ``failed`` with the
reason (and retried if the job asks for it); one whose wait for a run keeps
failing makes it ``unknown``; a staged launch whose release the lease no longer
allows is left to the next leader, which finds its release mark.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections import defaultdict
from collections.abc import Callable, Coroutine, Mapping
from datetime import datetime
from typing import Any

from distcron.clock import Clock
from distcron.errors import ExecutorError
from distcron.executors.base import Executor, RunState, RunStatus
from distcron.executors.output import publish_while_running
from distcron.replica.commit import fence_guard
from distcron.replica.lanes import Lanes
from distcron.replica.retention import RUN_DIR_RETENTION
from distcron.scheduler.decision import Decision, Start
from distcron.scheduler.inputs import Input, RunEnded, RunPending, RunStarted, RunUnknown
from distcron.scheduler.policy import ON_TIME_TOLERANCE
from distcron.scheduler.records import LaunchRecord
from distcron.store import Put, Store
from distcron.store.layout import output_key

log = logging.getLogger("distcron.leader")

# Process starts at once: a thousand jobs due together must not fork a thousand
# supervisors in the same instant.
START_CONCURRENCY = 32

# A wait for a run that fails this many times in a row gives the run up as unknown.
WAIT_ATTEMPTS = 4
_WAIT_RETRY_FIRST = 0.5
# How often a run pending in a batch scheduler is asked whether it started.
PENDING_POLL = 1.0

# A running run's output reaches the store this often (when it grew).
LIVE_OUTPUT_EVERY = 2.0

class LocalRuns:
    def __init__(self, store: Store, executors: Mapping[str, Executor], fence: int,
                 lease_valid: Callable[[], bool], clock: Clock, post: Callable[[Input], None],
                 spawn: Callable[..., None]) -> None:
        self.store = store
        self.executors = executors
        self.fence = fence
        self.lease_valid = lease_valid
        self.clock = clock
        self._post = post
        self._spawn_task = spawn
        self._starts = asyncio.Semaphore(START_CONCURRENCY)
        self._lanes = Lanes()
        self._pruned_runs_at = clock.monotonic()

    def act(self, decision: Decision) -> None:
        for start in decision.starts:
            self._spawn(self._run(start), f"start {start.record.run_id}",
                        following=start.record.launch_id)
        for record in decision.stops:
            self._spawn(self._stop(record), f"stop {record.run_id}")
        for record in decision.follows:
            self._spawn(self._follow_adopted(record), f"follow {record.run_id}",
                        following=record.launch_id)
        self._act_on_staged(decision)
        if self.clock.monotonic() - self._pruned_runs_at > RUN_DIR_RETENTION.total_seconds() / 6:
            self._pruned_runs_at = self.clock.monotonic()
            self._spawn(self._prune_run_dirs(), "prune run directories")

    async def close(self) -> None:
        await self._lanes.close()

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str, *,
               following: str | None = None) -> None:
        self._spawn_task(coro, name, following=following)

    def _executor_for(self, record: LaunchRecord) -> Executor:
        executor = self.executors.get(record.executor or "local")
        if executor is None:
            raise ExecutorError(f"launch {record.launch_id}: no {record.executor!r} executor "
                                "on this replica")
        return executor

    async def _run(self, start: Start) -> None:
        record = start.record
        assert record.run_id is not None
        executor = self.executors.get(record.executor or "local")
        paced = executor is not None and executor.paces_starts
        async with contextlib.nullcontext() if paced else self._starts:
            if not self.lease_valid():
                # Committed, but leadership may be gone: the next leader finds
                # the intent and starts it (idempotently) itself.
                return
            try:
                executor = self._executor_for(record)
                status = await executor.start(start.request)
            except ExecutorError as exc:
                log.warning("event=start_failed launch_id=%s error=%r", record.launch_id,
                            str(exc))
                self._post(RunEnded(record.launch_id, RunStatus.failed(record.run_id,
                                                                       str(exc))))
                return
        await self._follow(executor, record.launch_id, status)

    async def _follow_adopted(self, record: LaunchRecord) -> None:
        assert record.run_id is not None
        executor = self._executor_for(record)
        waiting = record.waiting_for_resources
        await self._follow(executor, record.launch_id,
                           RunStatus(record.run_id,
                                     RunState.PENDING if waiting else RunState.RUNNING,
                                     reason=record.reason),
                           adopted=not waiting)

    async def _follow(self, executor: Executor, launch_id: str, status: RunStatus,
                      adopted: bool = False) -> None:
        """Record that a run started, then wait for its end and record that."""
        if status.state is RunState.PENDING:
            started = await self._while_pending(executor, launch_id, status)
            if started is None:
                return
            status = started
        if status.state is RunState.RUNNING:
            if not adopted:
                log.info("event=run_started launch_id=%s pid=%s", launch_id, status.pid)
                self._post(RunStarted(launch_id, status, executor.worker_name))
            done = asyncio.Event()
            publishing = asyncio.ensure_future(self._publish(executor, status.launch_id, done))
            try:
                ended = await self._wait(executor, launch_id, status.launch_id)
            finally:
                # Awaited, not cancelled: a write in flight lands before the final output.
                done.set()
                await publishing
            if ended is None:
                return
            status = ended
        try:
            output = await executor.output(status.launch_id)
        except ExecutorError:
            output = b""
        self._post(RunEnded(launch_id, status, output))

    async def _while_pending(self, executor: Executor, launch_id: str, status: RunStatus
                             ) -> RunStatus | None:
        """Record the run as waiting for resources (again whenever the batch
        scheduler's reason changes) until it starts or ends; None (and the run
        given up as unknown) when the executor keeps failing to tell. A run that
        starts within the first poll is not recorded as waiting at all."""
        failures = 0
        recorded = ""
        while status.state is RunState.PENDING:
            await self.clock.sleep(PENDING_POLL)
            try:
                now = await executor.query(status.launch_id)
            except ExecutorError as exc:
                failures += 1
                log.warning("event=query_failed launch_id=%s attempt=%d error=%r", launch_id,
                            failures, str(exc))
                if failures >= WAIT_ATTEMPTS:
                    self._post(RunUnknown(launch_id, "the leader could not follow the "
                                                     f"pending run: {exc}"))
                    return None
                continue
            failures = 0
            if now.state is RunState.PENDING and now.reason != recorded:
                recorded = now.reason
                self._post(RunPending(launch_id, now))
            status = now
        return status

    async def _publish(self, executor: Executor, run_id: str, done: asyncio.Event) -> None:
        """The running run's output tail to the store as it grows (its final
        output is written with its end), guarded by the fence."""
        async def write(output: bytes) -> object:
            return await self.store.txn([fence_guard(self.fence)],
                                        [Put(output_key(run_id), output)])
        await publish_while_running(executor, run_id, done, write, self.clock.sleep,
                                    LIVE_OUTPUT_EVERY, self.lease_valid)

    async def _wait(self, executor: Executor, launch_id: str, run_id: str) -> RunStatus | None:
        """The run's final status; None (and the run given up as unknown) when
        the executor keeps failing to tell."""
        delay = _WAIT_RETRY_FIRST
        for attempt in range(1, WAIT_ATTEMPTS + 1):
            try:
                return await executor.wait(run_id)
            except ExecutorError as exc:
                log.warning("event=wait_failed launch_id=%s attempt=%d error=%r", launch_id,
                            attempt, str(exc))
                error = str(exc)
            if attempt < WAIT_ATTEMPTS:
                await self.clock.sleep(delay)
                delay *= 2
        self._post(RunUnknown(launch_id, f"the leader could not follow the run: {error}"))
        return None

    def _act_on_staged(self, decision: Decision) -> None:
        """Staged launches: let go, released, prepared, each executor in order.
        Releases come before preparing later slots: they are due now, and a
        staging (run directories, held shells) can take a while."""
        for record in decision.unstages:
            if (executor := self.executors.get(record.executor or "local")) is not None:
                self._lanes.submit(executor.name, functools.partial(
                    self._unstage, executor, record))
        released: dict[str, list[Start]] = defaultdict(list)
        for start in decision.releases:
            released[start.record.executor or "local"].append(start)
        for name, starts in released.items():
            self._lanes.submit(name, functools.partial(self._release, name, starts))
        by_slot: dict[tuple[str, datetime], list[Start]] = defaultdict(list)
        for start in decision.stages:
            assert start.record.slot is not None
            by_slot[(start.record.executor or "local", start.record.slot)].append(start)
        for (name, slot), starts in by_slot.items():
            if (executor := self.executors.get(name)) is not None:
                self._lanes.submit(name, functools.partial(
                    self._stage, executor, starts, slot + ON_TIME_TOLERANCE))

    async def _unstage(self, executor: Executor, record: LaunchRecord) -> None:
        assert record.run_id is not None
        log.info("event=run_unstaged launch_id=%s", record.launch_id)
        with contextlib.suppress(ExecutorError):
            await executor.unstage([record.run_id])

    async def _stage(self, executor: Executor, starts: list[Start], release_by: datetime
                     ) -> None:
        results = await executor.stage([s.request for s in starts], release_by)
        for start, result in zip(starts, results, strict=True):
            if isinstance(result, ExecutorError):
                # Its release starts it as a start would.
                log.warning("event=stage_failed launch_id=%s error=%r",
                            start.record.launch_id, str(result))

    async def _release(self, name: str, starts: list[Start]) -> None:
        if not self.lease_valid():
            # The release mark is committed: the next leader asks the executor.
            log.warning("event=release_withheld fence=%d launches=%d", self.fence,
                        len(starts))
            return
        executor = self.executors[name]
        results = await executor.release([s.request for s in starts])
        for start, result in zip(starts, results, strict=True):
            launch_id = start.record.launch_id
            if isinstance(result, ExecutorError):
                log.warning("event=start_failed launch_id=%s error=%r", launch_id,
                            str(result))
                self._post(RunEnded(launch_id, RunStatus.failed(start.request.launch_id,
                                                                str(result))))
            else:
                self._spawn(self._follow(executor, launch_id, result),
                            f"follow {start.request.launch_id}", following=launch_id)

    async def _stop(self, record: LaunchRecord) -> None:
        assert record.run_id is not None
        log.info("event=run_stopping launch_id=%s", record.launch_id)
        with contextlib.suppress(ExecutorError):
            await self._executor_for(record).stop(record.run_id)

    async def _prune_run_dirs(self) -> None:
        for executor in self.executors.values():
            with contextlib.suppress(ExecutorError):
                await executor.prune(self.clock.now() - RUN_DIR_RETENTION)
