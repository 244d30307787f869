"""Noticing, cheaply, what other processes did to the store file.

SQLite cannot notify one process of another's commit, so watches poll. An idle
replica polls forever, so each poll must cost next to nothing: a
:class:`ChangePoller` thread, with a connection of its own that it only reads
through, runs one indexed query per interval and calls into the event loop only
when the revision moved or a lease is due. Waking the event loop and the store's worker
thread on every poll instead would cost three times the CPU. The wake-up itself
costs about 0.1 ms of CPU here (more than the query), so once nothing has
changed for :data:`QUIET_AFTER` seconds the thread polls :data:`QUIET_FACTOR`
times less often, and at the interval again from the first change it sees: a
quiet store's first change, or a lease falling due, is seen that much later.

Each poll also compares the file at the path with the one the store opened,
and the revision with the last one seen, so that an idle replica learns within
one interval that its file was removed, replaced or put back older
(``on_fault``); a transaction would only learn it at the next write.

It never writes: reaping a due lease is left to the store's worker thread (the
``on_change`` callback asks for it), so that every write still happens there.

On failure: a failing query is logged (once per run of failures) and reported
through ``on_change`` with ``revision`` ``None``, so that watches re-read and
raise if the file is really gone; the poller keeps trying each interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

from distcron.store.sqlite_files import FileId, file_problem

log = logging.getLogger(__name__)

POLL_QUERY = "SELECT revision, (SELECT min(deadline) FROM lease) FROM state"
QUIET_AFTER = 2.0  # seconds without a change
QUIET_FACTOR = 4


def poll_interval(interval: float, quiet_for: float) -> float:
    """How long to wait before the next poll, nothing having changed for
    ``quiet_for`` seconds."""
    return interval * QUIET_FACTOR if quiet_for >= QUIET_AFTER else interval


class ChangePoller(threading.Thread):
    """Every ``interval`` seconds, reads the store's revision and its soonest
    lease deadline; calls ``on_change(revision, lease_due)`` in ``loop`` when
    the revision differs from the last one seen or a lease is due; and
    ``on_fault(reason)`` once the file is not ``file`` or its revision went back."""

    def __init__(
        self,
        path: Path,
        file: FileId,
        interval: float,
        monotonic: Callable[[], float],
        loop: asyncio.AbstractEventLoop,
        on_change: Callable[[int | None, bool], None],
        on_fault: Callable[[str], None],
    ) -> None:
        super().__init__(name=f"distcron-sqlite-poll {path.name}", daemon=True)
        self._path = path
        self._interval = interval
        self._monotonic = monotonic
        self._loop = loop
        self._on_change = on_change
        self._on_fault = on_fault
        self._file = file
        self._stopping = threading.Event()

    def stop(self) -> None:
        """Ask the thread to end; it does within one query."""
        self._stopping.set()

    def run(self) -> None:
        if self._moved():
            return
        try:
            # A short busy timeout rides over the rare moments a WAL reader waits;
            # mode=rw: a file removed meanwhile is not made again, empty.
            conn = sqlite3.connect(f"{self._path.as_uri()}?mode=rw", uri=True, timeout=1.0,
                                   isolation_level=None)
        except sqlite3.Error as exc:
            if self._moved():
                return
            log.warning("event=poll_failed store=%s error=%r", self._path, str(exc))
            self._report(None, False)
            return
        last: int | None = None
        failing = False
        changed = self._monotonic()
        try:
            while not self._stopping.wait(poll_interval(self._interval,
                                                        self._monotonic() - changed)):
                if self._moved():
                    return
                try:
                    revision, soonest = conn.execute(POLL_QUERY).fetchone()
                except sqlite3.Error as exc:
                    if not failing:
                        log.warning("event=poll_failed store=%s error=%r", self._path,
                                    str(exc))
                    failing = True
                    self._report(None, False)
                    continue
                failing = False
                if last is not None and revision < last:
                    self._fault(f"the file went back from revision {last} to {revision} "
                                "(an older copy was put in its place)")
                    return
                due = soonest is not None and soonest <= self._monotonic()
                if revision != last or due:
                    last, changed = revision, self._monotonic()
                    self._report(revision, due)
        finally:
            conn.close()

    def _moved(self) -> bool:
        """Whether the file at the path is not the store's (reported as a fault)."""
        problem = file_problem(self._path, self._file)
        if problem is not None:
            self._fault(problem)
        return problem is not None

    def _fault(self, reason: str) -> None:
        # A closed loop: nobody is left to tell.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._on_fault, reason)

    def _report(self, revision: int | None, due: bool) -> None:
        try:
            self._loop.call_soon_threadsafe(self._on_change, revision, due)
        except RuntimeError:
            # The loop is closed: the store was dropped without close(); end quietly.
            self._stopping.set()
