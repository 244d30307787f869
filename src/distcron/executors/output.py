"""A run's output, kept to its last ``limit`` bytes on disk.

The supervisor appends what the job writes to ``output``, created at the first
byte; when that file reaches ``limit`` bytes it is renamed ``output.1``
(replacing the one before) and the next byte begins a new ``output``. So at most
about ``2 × limit`` bytes are on disk however chatty the job, and ``output.1`` +
``output`` always end with the last ``limit`` bytes written; a missing file
holds nothing.

On failure: when a write fails (disk full), the ring stops recording, logs it
once, and keeps accepting data, so that the supervisor keeps draining the job's
pipe and the job never blocks on it. Output read while the job runs is a
best-effort snapshot: a rotation between the two reads can drop a segment.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from distcron.errors import ExecutorError, StoreUnavailable
from distcron.executors.base import DEFAULT_OUTPUT_LIMIT, Executor
from distcron.executors.rundir import RunDir

OUTPUT = "output"
OUTPUT_OLD = "output.1"

log = logging.getLogger("distcron.executors")


class OutputRing:
    def __init__(self, run: RunDir, limit: int, launch_id: str) -> None:
        self._path = run.path / OUTPUT
        self._old = run.path / OUTPUT_OLD
        self._limit = limit
        self._launch_id = launch_id
        # Opened at the first output: most jobs print nothing, and a file
        # created for nothing is a cost every launch would pay.
        self._file: BinaryIO | None = None
        self._size = 0
        self._failed = False

    def write(self, data: bytes) -> None:
        if self._failed:
            return
        try:
            if self._file is None:
                self._file = open(self._path, "ab")  # noqa: SIM115 -- closed by close()
            self._file.write(data)
            self._file.flush()  # readers see output while the job runs
            self._size += len(data)
            if self._size >= self._limit:
                self._file.close()
                self._file = None
                os.replace(self._path, self._old)
                self._size = 0
        except OSError as exc:
            self._failed = True
            log.warning("event=output_lost launch_id=%s error=%r", self._launch_id, str(exc))

    def close(self) -> None:
        if self._file is None:
            return
        try:
            self._file.close()
        except OSError as exc:
            log.warning("event=output_lost launch_id=%s error=%r", self._launch_id, str(exc))

    def __enter__(self) -> OutputRing:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def read_output(run: RunDir, limit: int) -> bytes:
    """The last ``limit`` bytes of the run's output."""
    return (_read(run.path / OUTPUT_OLD) + _read(run.path / OUTPUT))[-limit:]


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""


async def publish_while_running(executor: Executor, run_id: str, done: asyncio.Event,
                                write: Callable[[bytes], Awaitable[object]],
                                sleep: Callable[[float], Awaitable[None]], every: float,
                                may_write: Callable[[], bool] = lambda: True) -> None:
    """Until ``done``: every ``every`` seconds, hand the run's output tail to
    ``write`` when it grew (and ``may_write()``), so that any replica's API can
    show a running launch's output. A failure is tried again at the next turn."""
    last = b""
    while not done.is_set():
        ended = asyncio.ensure_future(done.wait())
        pause = asyncio.ensure_future(sleep(every))
        await asyncio.wait({ended, pause}, return_when=asyncio.FIRST_COMPLETED)
        ended.cancel()
        pause.cancel()
        if done.is_set() or not may_write():
            continue
        try:
            output = (await executor.output(run_id))[-DEFAULT_OUTPUT_LIMIT:]
            if output and output != last:
                await write(output)
                last = output
        except (ExecutorError, StoreUnavailable) as exc:
            log.debug("event=live_output_failed run_id=%s error=%r", run_id, str(exc))
