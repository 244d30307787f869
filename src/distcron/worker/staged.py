"""Launches staged on a worker: prepared on their claim, started when a release
mark names them.

The leader assigns a launch due within its lead with ``release_by`` in the
assignment (:func:`distcron.worker.protocol.assignment_value`). The worker
claims it as any other, then has its executor *stage* it (run directory
written, shell held ready; nothing of the job runs) and waits. At the slot the
leader commits a release mark, ``released/<mark>`` (a JSON list of launch
ids), under its fence; the worker watches ``released/`` and releases each
staged launch a mark names. So a launch starts only after a leader's fenced
write says so, and a leader that dies before writing the mark leaves the
launch unstarted: the next one writes the mark (or records the slot missed and
deletes the assignment).

While it waits, a staged launch follows its assignment: a stop request lets
it go and reports it ``stopped`` (never started); a rewrite (the job edited)
stages the new request in its place; a deletion (the job paused or removed
before its slot) lets it go with no report. ``release_by`` bounds only how long
the executor holds it ready: a mark that comes later still starts it, as a
plain start would.

The calls of many launches' tasks are made together (:class:`Coalesced`): the
launches of a burst are staged, and released, in a few executor calls.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, TypeVar

from distcron.errors import ExecutorError
from distcron.executors.base import Executor, LaunchRequest, RunStatus

log = logging.getLogger("distcron.worker")

K = TypeVar("K")
R = TypeVar("R")


class Coalesced(Generic[K, R]):
    """Calls made by many tasks in the same moment, run as one call of ``run``
    on the list of their arguments (which returns one result per argument).
    While a call is under way, new arguments wait for the next one."""

    def __init__(self, run: Callable[[list[K]], Awaitable[list[R]]]) -> None:
        self._run = run
        self._queue: list[tuple[K, asyncio.Future[R]]] = []
        self._flushing: asyncio.Task[None] | None = None

    async def __call__(self, item: K) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if self._flushing is None:
            self._flushing = asyncio.create_task(self._flush())
        # Shielded: a caller cancelled (shutdown) does not cancel the others' call.
        return await asyncio.shield(future)

    async def _flush(self) -> None:
        try:
            while self._queue:
                # One turn of the loop: the tasks woken with this one add theirs.
                await asyncio.sleep(0)
                batch, self._queue = self._queue, []
                try:
                    results = await self._run([item for item, _ in batch])
                except Exception as exc:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, future), result in zip(batch, results, strict=True):
                    if not future.done():
                        future.set_result(result)
        finally:
            self._flushing = None


@dataclass
class AssignmentWatch:
    """What the agent tells a launch's task of its assignment: ``value`` as it
    is now (None: deleted), ``changed`` set at each change of it, and
    ``released`` once a release mark names the launch."""

    value: bytes | None
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    released: asyncio.Event = field(default_factory=asyncio.Event)

    def update(self, value: bytes | None) -> None:
        if value != self.value:
            self.value = value
            self.changed.set()


class StagedCalls:
    """The executor's stage, release and unstage, each made for many launches at
    once. An ExecutorError (nothing was done) is each launch's result, not
    raised: a launch that could not be staged is started by its release as a
    plain start would, and one that could not be unstaged lets itself go at
    its ``release_by``."""

    def __init__(self, executor: Executor) -> None:
        self.executor = executor
        self.stage: Coalesced[tuple[LaunchRequest, datetime], RunStatus | ExecutorError] = (
            Coalesced(self._stage_all))
        self.release: Coalesced[LaunchRequest, RunStatus | ExecutorError] = (
            Coalesced(self._release_all))
        self.unstage: Coalesced[str, None] = Coalesced(self._unstage_all)

    async def _stage_all(self, items: list[tuple[LaunchRequest, datetime]]
                         ) -> list[RunStatus | ExecutorError]:
        by_deadline: dict[datetime, list[int]] = defaultdict(list)
        for n, (_, release_by) in enumerate(items):
            by_deadline[release_by].append(n)
        results: list[RunStatus | ExecutorError] = [ExecutorError("not staged")] * len(items)
        for release_by, indexes in by_deadline.items():
            requests = [items[n][0] for n in indexes]
            try:
                staged = await self.executor.stage(requests, release_by)
            except ExecutorError as exc:
                staged = [exc] * len(requests)
            for n, result in zip(indexes, staged, strict=True):
                results[n] = result
        log.info("event=staged count=%d", len(items))
        return results

    async def _release_all(self, requests: list[LaunchRequest]
                           ) -> list[RunStatus | ExecutorError]:
        try:
            results = await self.executor.release(requests)
        except ExecutorError as exc:
            return [exc] * len(requests)
        log.info("event=released count=%d", len(requests))
        return results

    async def _unstage_all(self, launch_ids: list[str]) -> list[None]:
        try:
            await self.executor.unstage(launch_ids)
        except ExecutorError as exc:
            log.warning("event=unstage_failed count=%d error=%r", len(launch_ids), str(exc))
        return [None] * len(launch_ids)


class ReleaseMarks:
    """The release marks the worker has seen (``released/<mark>``), as the store
    has them: which launch ids any of them names."""

    def __init__(self) -> None:
        self._marks: dict[str, frozenset[str]] = {}
        self._named: defaultdict[str, int] = defaultdict(int)

    def names(self, launch_id: str) -> bool:
        return self._named.get(launch_id, 0) > 0

    def put(self, mark: str, value: bytes) -> frozenset[str]:
        """A mark written; returns the launch ids it names."""
        self.delete(mark)
        try:
            body = json.loads(value)
        except ValueError:
            body = None
        if not isinstance(body, list):
            log.warning("event=release_mark_unreadable mark=%s", mark)
            return frozenset()
        ids = frozenset(str(launch_id) for launch_id in body)
        self._marks[mark] = ids
        for launch_id in ids:
            self._named[launch_id] += 1
        return ids

    def delete(self, mark: str) -> None:
        for launch_id in self._marks.pop(mark, frozenset()):
            self._named[launch_id] -= 1
            if not self._named[launch_id]:
                del self._named[launch_id]

    def replace(self, marks: Iterable[tuple[str, bytes]]) -> frozenset[str]:
        """The marks of a fresh read; returns every launch id they name."""
        for mark in list(self._marks):
            self.delete(mark)
        named: set[str] = set()
        for mark, value in marks:
            named |= self.put(mark, value)
        return frozenset(named)

