"""The worker agent: registration, the watch of its assignments, and its slots.

The agent reads ``assign/<id>/`` once and then watches it from the revision of
that read, so assignments already there (a restarted worker's) are handled
first. Each assignment gets a task of :class:`~distcron.worker.runner.LaunchRunner`
that claims, runs and reports it. At most ``slots`` tasks hold a slot at once:
a task holds one from before its claim until its run ends, so extra
assignments stay unclaimed (the leader should not send them, but a worker does
not trust that) until a slot frees. Launches a restarted worker finds claimed
by itself go first and regardless of the slots, since their runs may be live
already; they hold slots too. Claims are made only while the registration is
alive.

A stop request (the leader rewrites an assignment with ``"stop": true``, see
:mod:`distcron.worker.protocol`) sets the launch's stop event, which its task
follows: a run not started yet is never started, a live one is stopped. A
stopped assignment not yet claimed is dispatched at once whatever the slots:
it starts nothing, and the leader waits for its report.

On failure:

- **Lease loss** (:mod:`distcron.worker.registration`): no new claims until the
  worker is registered again; running launches go on and are reported.
- **Store unreachable**: the watch is re-established from a fresh read of the
  prefix (as after ``Compacted``), with capped backoff; claims and reports
  retry in their tasks.
- **Shutdown** (:meth:`WorkerAgent.run` returns when ``stop`` is set): no more
  claims, the tasks are cancelled without touching their runs (detached, they
  go on), and the lease is revoked so the registration vanishes at once. While
  the worker is down its runs are not reported; a worker started again with
  the same id and data directory adopts and reports them. Per the protocol, a
  leader treats launches of a vanished worker that have no final report as
  ``lost`` — at once after a shutdown, after the lease TTL after a crash.
- **Restart**: runs this worker claimed are adopted through the executor's run
  directory; see :mod:`distcron.worker.runner`. Run directories of ended runs
  are pruned after ``run_retention``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from distcron.clock import Clock
from distcron.errors import Compacted, ConfigError, ExecutorError, StoreUnavailable
from distcron.executors.base import Executor
from distcron.store import Event, KeyValue, Store
from distcron.store.layout import assignment_prefix, claim_key, name_of
from distcron.worker.protocol import stop_requested
from distcron.worker.registration import Registration, RegistrationConfig
from distcron.worker.runner import RETRY_FIRST, RETRY_MAX, LaunchRunner, Outcome, claimant

log = logging.getLogger("distcron.worker")


@dataclass(frozen=True)
class WorkerConfig:
    """How a worker presents itself and paces its work (durations in seconds)."""

    worker_id: str
    slots: int
    tags: tuple[str, ...] = ()
    lease_ttl: float = 3.0
    info_interval: float = 5.0
    run_retention: float = 86_400.0  # ended runs' directories are kept this long
    load_file: Path | None = None  # see distcron.worker.registration.current_load
    prune_interval: float = 3_600.0

    def __post_init__(self) -> None:
        if not self.worker_id or "/" in self.worker_id:
            # "/" would make one worker's assignments a sub-prefix of another's.
            raise ConfigError(f"worker id {self.worker_id!r}: must be non-empty, without '/'")
        if self.slots < 1:
            raise ConfigError(f"worker {self.worker_id!r}: slots must be at least 1")
        if self.lease_ttl <= 0:
            raise ConfigError(f"worker {self.worker_id!r}: the lease TTL must be positive")


class WorkerAgent:
    """Runs the launches assigned to one worker; see the module docstring."""

    def __init__(self, store: Store, executor: Executor, config: WorkerConfig,
                 clock: Clock) -> None:
        self.store = store
        self.executor = executor
        self.config = config
        self.clock = clock
        self.registration = Registration(
            store, RegistrationConfig(config.worker_id, config.slots, config.tags,
                                      config.lease_ttl, config.info_interval,
                                      config.load_file),
            clock, running=lambda: len(self._busy), on_registered=self._dispatch)
        self.runner = LaunchRunner(store, executor, self.registration, clock)
        self._prefix = assignment_prefix(config.worker_id)
        # launch id -> assignment value, in the order the assignments came.
        self._assigned: dict[str, bytes] = {}
        # launch id -> set once the leader asked for it to be stopped; its task
        # (now or later) follows it.
        self._stop_requests: dict[str, asyncio.Event] = {}
        self._tasks: dict[str, asyncio.Task[Outcome]] = {}
        self._busy: set[str] = set()  # launches holding a slot
        self._done: set[str] = set()  # handled while their assignment lives on
        self._ours: set[str] = set()  # found claimed by this worker, not yet adopted
        self._stopping = False

    async def run(self, stop: asyncio.Event) -> None:
        """Work until ``stop`` is set, then shut down (see the module docstring)."""
        log.info("event=worker_starting worker=%s slots=%s tags=%s", self.config.worker_id,
                 self.config.slots, ",".join(self.config.tags))
        background = [
            asyncio.create_task(self.registration.run(), name="worker-registration"),
            asyncio.create_task(self._watch(), name="worker-watch"),
            asyncio.create_task(self._prune(), name="worker-prune"),
        ]
        stopper = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({stopper, *background}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._stopping = True
            log.info("event=worker_stopping worker=%s running=%s", self.config.worker_id,
                     len(self._busy))
            tasks = [stopper, *background, *self._tasks.values()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.registration.leave()
        for task in background:
            # These loop until cancelled: one that ended by itself hit a bug.
            if not task.cancelled() and (error := task.exception()) is not None:
                raise error

    async def _watch(self) -> None:
        delay = RETRY_FIRST
        while True:
            try:
                kvs, revision = await self.store.range(self._prefix)
                await self._find_ours(kvs)
                self._reconcile(kvs)
                delay = RETRY_FIRST
                watch = self.store.watch(self._prefix, revision + 1)
                try:
                    async for batch in watch:
                        for event in batch.events:
                            self._apply(event)
                finally:
                    await watch.aclose()
            except Compacted as exc:
                log.info("event=watch_compacted worker=%s error=%r", self.config.worker_id,
                         str(exc))
                continue
            except StoreUnavailable as exc:
                log.warning("event=watch_failed worker=%s error=%r delay=%s",
                            self.config.worker_id, str(exc), delay)
            # The watch ended (store closed or unreachable): read again, later.
            await self.clock.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)

    async def _find_ours(self, kvs: list[KeyValue]) -> None:
        """Note which of the assignments not yet known this worker has claimed
        already (before a restart): their runs may be live, so they are adopted
        first and whatever the slots (see ``_dispatch``)."""
        for kv in kvs:
            launch_id = name_of(kv.key, self._prefix)
            if launch_id in self._assigned:
                continue
            if claimant(await self.store.get(claim_key(launch_id))) == self.config.worker_id:
                self._ours.add(launch_id)

    def _reconcile(self, kvs: list[KeyValue]) -> None:
        """Make the known assignments those of a fresh read."""
        present = {name_of(kv.key, self._prefix): kv.value for kv in kvs}
        for launch_id in [lid for lid in self._assigned if lid not in present]:
            self._forget(launch_id)
        for launch_id, value in present.items():
            self._add(launch_id, value)

    def _apply(self, event: Event) -> None:
        launch_id = name_of(event.kv.key, self._prefix)
        if event.type == "put":
            self._add(launch_id, event.kv.value)
        else:
            self._forget(launch_id)

    def _add(self, launch_id: str, value: bytes) -> None:
        known = self._assigned.get(launch_id)
        if known is not None:
            # Seen again by a re-read, or rewritten: the only rewrite the leader
            # makes is a stop request.
            self._assigned[launch_id] = value
            if known != value and stop_requested(value):
                self._stop(launch_id)
            return
        log.info("event=assigned launch_id=%s", launch_id)
        self._assigned[launch_id] = value
        self._stop_requests[launch_id] = asyncio.Event()
        if stop_requested(value):
            self._stop(launch_id)  # (it dispatches)
        else:
            self._dispatch()
        if launch_id not in self._tasks and not self._stopping:
            reason = ("slots_full" if len(self._busy) >= self.config.slots
                      else "not_registered")
            log.info("event=assignment_waiting launch_id=%s reason=%s", launch_id, reason)

    def _stop(self, launch_id: str) -> None:
        """The leader asked for the launch to be stopped: tell its task, or
        dispatch it now (see ``_dispatch``)."""
        requested = self._stop_requests[launch_id]
        if requested.is_set():
            return
        log.info("event=stop_received launch_id=%s worker=%s handled=%s", launch_id,
                 self.config.worker_id, launch_id in self._done)
        requested.set()
        self._dispatch()

    def _forget(self, launch_id: str) -> None:
        """The leader deleted the assignment (after recording the outcome). A task
        still following the run keeps its slot until the run ends; its reports
        are dropped."""
        log.info("event=unassigned launch_id=%s", launch_id)
        del self._assigned[launch_id]
        # The task keeps its own reference to the event, if it still runs.
        del self._stop_requests[launch_id]
        self._done.discard(launch_id)
        self._ours.discard(launch_id)

    def _dispatch(self) -> None:
        """Start a task for each waiting assignment, while slots are free.

        Launches already ours go first and regardless of the slots: adopting a
        run starts nothing, and a live run must be followed and reported; it
        takes a slot, so new claims wait until the slots are free again. So do
        launches the leader asked to stop: they start nothing either, and the
        leader waits for their report.
        """
        if self._stopping or not self.registration.alive():
            return
        urgent = [launch_id for launch_id in self._assigned if self._urgent(launch_id)]
        others = [launch_id for launch_id in self._assigned if not self._urgent(launch_id)]
        for launch_id in urgent + others:
            if launch_id in self._tasks or launch_id in self._done:
                continue
            if len(self._busy) >= self.config.slots and not self._urgent(launch_id):
                return
            value = self._assigned[launch_id]
            self._busy.add(launch_id)
            self.registration.changed()
            task = asyncio.create_task(
                self.runner.handle(launch_id, value, functools.partial(self._release, launch_id),
                                   self._stop_requests[launch_id]),
                name=f"launch-{launch_id}")
            self._tasks[launch_id] = task
            task.add_done_callback(functools.partial(self._finished, launch_id))

    def _urgent(self, launch_id: str) -> bool:
        return launch_id in self._ours or self._stop_requests[launch_id].is_set()

    def _release(self, launch_id: str) -> None:
        if launch_id in self._busy:
            self._busy.discard(launch_id)
            self.registration.changed()
            self._dispatch()

    def _finished(self, launch_id: str, task: asyncio.Task[Outcome]) -> None:
        del self._tasks[launch_id]
        if task.cancelled():
            return
        if (error := task.exception()) is not None:
            # A bug: leave the launch alone rather than retry it in a loop.
            log.error("event=launch_task_failed launch_id=%s error=%r", launch_id, str(error),
                      exc_info=error)
        elif task.result() is Outcome.RETRY:
            # Not claimed, the registration was gone: claim again once it is
            # back (now, if it already is).
            self._dispatch()
            return
        self._ours.discard(launch_id)
        if launch_id in self._assigned:
            self._done.add(launch_id)

    async def _prune(self) -> None:
        """Forget ended runs after ``run_retention``: the runner never starts a
        launch again whose run directory is gone once it has reported it."""
        while True:
            before = self.clock.now() - timedelta(seconds=self.config.run_retention)
            try:
                await self.executor.prune(before)
            except ExecutorError as exc:
                log.warning("event=prune_failed worker=%s error=%r", self.config.worker_id,
                            str(exc))
            await self.clock.sleep(self.config.prune_interval)
