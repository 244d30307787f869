"""The worker agent: registration, the watch of its assignments, and its slots.

The agent reads ``assign/<id>/`` once and then watches it from the revision of
that read, so assignments already there (a restarted worker's) are handled
first. It keeps one record per launch (:mod:`distcron.worker.launches`: the
states, their transitions, and which waiting launch gets a task when) and
applies the transitions: what the watch sees, and what each launch's task of
:class:`~distcron.worker.runner.LaunchRunner` tells as it claims, runs and
reports. At most ``slots`` launches hold a slot at once, from before their
claim until their run ends, so extra assignments stay unclaimed (the leader
should not send them, but a worker does not trust that) until a slot frees.
Launches a restarted worker finds claimed by itself go first and regardless of
the slots, since their runs may be live already; they hold slots too. Claims
are made only while the registration is alive.

It also mirrors the release marks (``released/``, read once, then watched):
a staged launch (``release_by`` in its assignment) starts once a mark names it;
its task is told, with each change of its assignment, through an
:class:`~distcron.worker.staged.AssignmentWatch`.

A stop request (the leader rewrites an assignment with ``"stop": true``, see
:mod:`distcron.worker.protocol`) sets the stop event of the launch's task,
which follows it: a run not started yet is never started, a live one is
stopped. A stopped assignment not yet claimed gets its task at once whatever
the slots: it starts nothing, and the leader waits for its report.

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
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from distcron.clock import Clock
from distcron.errors import Compacted, ConfigError, ExecutorError, StoreUnavailable
from distcron.executors.base import Executor
from distcron.store import Event, KeyValue, Store
from distcron.store.layout import RELEASED, assignment_prefix, claim_key, name_of
from distcron.worker import launches
from distcron.worker.launches import Launch, Outcome, State, Step
from distcron.worker.registration import Registration, RegistrationConfig
from distcron.worker.runner import RETRY_FIRST, RETRY_MAX, LaunchRunner, claimant
from distcron.worker.staged import AssignmentWatch, ReleaseMarks

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


@dataclass
class _Tracked:
    """A launch's record, with the handles of its task: ``task`` while it has
    one (``launch.state.has_task``), ``stop``, set once the leader asked for
    the launch to be stopped (a task, now or later, follows it), and ``watch``:
    its assignment as it changes, and whether a release mark names it."""

    launch: Launch
    watch: AssignmentWatch
    task: asyncio.Task[Outcome] | None = None
    stop: asyncio.Event = field(default_factory=asyncio.Event)


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
            clock, running=self._busy, on_registered=self._dispatch)
        self.runner = LaunchRunner(store, executor, self.registration, clock)
        self._prefix = assignment_prefix(config.worker_id)
        # launch id -> what this worker knows of it, in the order the assignments came.
        self._launches: dict[str, _Tracked] = {}
        self._marks = ReleaseMarks()
        self._stopping = False  # shutting down: no task is started any more

    async def run(self, stop: asyncio.Event) -> None:
        """Work until ``stop`` is set, then shut down (see the module docstring)."""
        log.info("event=worker_starting worker=%s slots=%s tags=%s", self.config.worker_id,
                 self.config.slots, ",".join(self.config.tags))
        background = [
            asyncio.create_task(self.registration.run(), name="worker-registration"),
            asyncio.create_task(self._watch(), name="worker-watch"),
            asyncio.create_task(self._watch_marks(), name="worker-release-marks"),
            asyncio.create_task(self._prune(), name="worker-prune"),
        ]
        stopper = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({stopper, *background}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._stopping = True
            log.info("event=worker_stopping worker=%s running=%s", self.config.worker_id,
                     self._busy())
            tasks = [stopper, *background,
                     *(t.task for t in self._launches.values() if t.task is not None)]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.registration.leave()
        for task in background:
            # These loop until cancelled: one that ended by itself hit a bug.
            if not task.cancelled() and (error := task.exception()) is not None:
                raise error

    def _records(self) -> list[Launch]:
        return [tracked.launch for tracked in self._launches.values()]

    def _busy(self) -> int:
        return launches.busy(self._records())

    async def _watch(self) -> None:
        async def read(kvs: list[KeyValue]) -> None:
            self._reconcile(kvs, await self._find_ours(kvs))
        await self._mirror(self._prefix, "assignments", read, lambda events: self._take(
            [self._change(event) for event in events]))

    async def _watch_marks(self) -> None:
        """Mirror the release marks (``released/``): a staged launch starts once
        one names it (see :mod:`distcron.worker.staged`)."""
        async def read(kvs: list[KeyValue]) -> None:
            self._released(self._marks.replace(
                (name_of(kv.key, RELEASED), kv.value) for kv in kvs))

        def take(events: list[Event]) -> None:
            named: set[str] = set()
            for event in events:
                mark = name_of(event.kv.key, RELEASED)
                if event.type == "put":
                    named |= self._marks.put(mark, event.kv.value)
                else:
                    self._marks.delete(mark)
            self._released(named)
        await self._mirror(RELEASED, "release_marks", read, take)

    async def _mirror(self, prefix: str, what: str,
                      read: Callable[[list[KeyValue]], Awaitable[None]],
                      take: Callable[[list[Event]], None]) -> None:
        """Read ``prefix`` once, then watch it from the revision of that read;
        after a failure (the store unreachable, or ``Compacted``), read again."""
        delay = RETRY_FIRST
        while True:
            try:
                kvs, revision = await self.store.range(prefix)
                await read(kvs)
                delay = RETRY_FIRST
                watch = self.store.watch(prefix, revision + 1)
                try:
                    async for batch in watch:
                        take(list(batch.events))
                finally:
                    await watch.aclose()
            except Compacted as exc:
                log.info("event=watch_compacted worker=%s what=%s error=%r",
                         self.config.worker_id, what, str(exc))
                continue
            except StoreUnavailable as exc:
                log.warning("event=watch_failed worker=%s what=%s error=%r delay=%s",
                            self.config.worker_id, what, str(exc), delay)
            # The watch ended (store closed or unreachable): read again, later.
            await self.clock.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)

    def _released(self, launch_ids: Iterable[str]) -> None:
        for launch_id in launch_ids:
            if (tracked := self._launches.get(launch_id)) is not None:
                tracked.watch.released.set()

    async def _find_ours(self, kvs: list[KeyValue]) -> set[str]:
        """Which of the assignments not yet known this worker has claimed
        already (before a restart): their runs may be live, so they are adopted
        first and whatever the slots."""
        ours = set()
        for kv in kvs:
            launch_id = name_of(kv.key, self._prefix)
            if launch_id in self._launches:
                continue
            if claimant(await self.store.get(claim_key(launch_id))) == self.config.worker_id:
                ours.add(launch_id)
        return ours

    def _reconcile(self, kvs: list[KeyValue], ours: set[str]) -> None:
        """Make the known assignments those of a fresh read."""
        present = {name_of(kv.key, self._prefix): kv.value for kv in kvs}
        gone: list[tuple[str, bytes | None]] = [
            (launch_id, None) for launch_id, tracked in self._launches.items()
            if tracked.launch.assigned and launch_id not in present]
        self._take([*gone, *present.items()], ours)

    def _change(self, event: Event) -> tuple[str, bytes | None]:
        return (name_of(event.kv.key, self._prefix),
                event.kv.value if event.type == "put" else None)

    def _take(self, changes: list[tuple[str, bytes | None]],
              ours: set[str] | None = None) -> None:
        """Apply what the store says of assignments (``None``: deleted), then
        give waiting launches their tasks."""
        new = []
        for launch_id, value in changes:
            if value is None:
                self._unassigned(launch_id)
            elif self._seen(launch_id, value, ours=launch_id in (ours or ())):
                new.append(launch_id)
        self._dispatch()
        if self._stopping:
            return
        for launch_id in new:
            tracked = self._launches.get(launch_id)
            if tracked is not None and tracked.launch.state is State.ASSIGNED:
                reason = launches.waiting_reason(self._records(), self.config.slots)
                log.info("event=assignment_waiting launch_id=%s reason=%s", launch_id,
                         reason.value)

    def _seen(self, launch_id: str, value: bytes, *, ours: bool) -> bool:
        """The assignment was read or written; True if it is new. The only
        rewrite the leader makes is a stop request: tell its task, if any."""
        now = self.clock.monotonic()
        tracked = self._launches.get(launch_id)
        new = tracked is None
        if tracked is None:
            log.info("event=assigned launch_id=%s", launch_id)
            tracked = _Tracked(launches.assigned(launch_id, value, now, ours=ours),
                               AssignmentWatch(value))
            if self._marks.names(launch_id):
                tracked.watch.released.set()
            self._launches[launch_id] = tracked
        else:
            self._update(launch_id, tracked.launch.seen(value, now))
            tracked.watch.update(value)
        if tracked.launch.stop and not tracked.stop.is_set():
            log.info("event=stop_received launch_id=%s worker=%s handled=%s", launch_id,
                     self.config.worker_id,
                     tracked.launch.state in (State.ENDED, State.REPORTED))
            tracked.stop.set()
        return new

    def _unassigned(self, launch_id: str) -> None:
        """The leader deleted the assignment (after recording the outcome)."""
        tracked = self._launches.get(launch_id)
        if tracked is None:
            return
        log.info("event=unassigned launch_id=%s", launch_id)
        tracked.watch.update(None)
        self._update(launch_id, tracked.launch.unassigned())

    def _update(self, launch_id: str, after: Launch | None) -> None:
        """Apply one transition of the launch's record (``None``: forget it)."""
        tracked = self._launches[launch_id]
        before = tracked.launch
        if after is None:
            del self._launches[launch_id]
        else:
            tracked.launch = after
        if before.state.holds_slot != (after is not None and after.state.holds_slot):
            self.registration.changed()

    def _dispatch(self) -> None:
        """Start a task for each waiting launch that gets one now (see
        :func:`distcron.worker.launches.to_dispatch`)."""
        if self._stopping or not self.registration.alive():
            return
        now = self.clock.monotonic()
        for launch in launches.to_dispatch(self._records(), self.config.slots):
            launch_id = launch.launch_id
            tracked = self._launches[launch_id]
            self._update(launch_id, launch.dispatched(now))
            log.info("event=dispatched launch_id=%s state=%s waited=%.3f", launch_id,
                     tracked.launch.state.value, now - launch.since)
            tracked.task = asyncio.create_task(
                self.runner.handle(launch_id, launch.value,
                                   functools.partial(self._progressed, launch_id),
                                   tracked.stop, tracked.watch),
                name=f"launch-{launch_id}")
            tracked.task.add_done_callback(functools.partial(self._finished, launch_id))

    def _progressed(self, launch_id: str, step: Step) -> None:
        tracked = self._launches[launch_id]
        self._update(launch_id, tracked.launch.progressed(step, self.clock.monotonic()))
        if step is Step.ENDED:
            self._dispatch()  # its slot is free

    def _finished(self, launch_id: str, task: asyncio.Task[Outcome]) -> None:
        tracked = self._launches[launch_id]
        tracked.task = None
        if task.cancelled():
            return  # shutting down: the run goes on, detached
        outcome = Outcome.DONE
        if (error := task.exception()) is not None:
            # A bug: leave the launch alone rather than retry it in a loop.
            log.error("event=launch_task_failed launch_id=%s error=%r", launch_id, str(error),
                      exc_info=error)
        else:
            # RETRY: not claimed, the registration was gone: claim again once
            # it is back (now, if it already is).
            outcome = task.result()
        self._update(launch_id, tracked.launch.finished(outcome, self.clock.monotonic()))
        self._dispatch()

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
