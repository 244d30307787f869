"""One lane of work per executor: staging, letting go and releasing done in the
order the leader decided them, so that a release never overtakes the staging of
the same launch, nor a new staging the letting go of the old one."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("distcron.leader")

Work = Callable[[], Awaitable[None]]


class Lanes:
    def __init__(self) -> None:
        self._queues: dict[str, asyncio.Queue[Work]] = {}
        self._tasks: list[asyncio.Task[None]] = []

    def submit(self, lane: str, work: Work) -> None:
        queue = self._queues.get(lane)
        if queue is None:
            queue = self._queues[lane] = asyncio.Queue()
            self._tasks.append(asyncio.create_task(self._drain(lane, queue),
                                                   name=f"lane {lane}"))
        queue.put_nowait(work)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @staticmethod
    async def _drain(lane: str, queue: asyncio.Queue[Work]) -> None:
        while True:
            work = await queue.get()
            try:
                await work()
            except Exception as exc:  # each work item handles its own; this is a bug
                log.error("event=task_failed task=%r error=%r", f"lane {lane}", str(exc),
                          exc_info=exc)
