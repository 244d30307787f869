"""The ``sqlite`` store backend: the whole store in one SQLite file, on one machine.

Several processes on the machine may share the file — two ``distcron serve``
replicas (a leader and its hot standby) and workers. Everything authoritative
(revision, keys, leases, event history) is in the file; a process keeps only a
connection, so any of them may die at any moment without losing anything that
was committed (commits are on disk before they return).

URLs (the form SQLAlchemy uses): what follows ``sqlite:///`` is the path as
written, so ``sqlite:///distcron-data/state.db`` is relative to the working
directory and ``sqlite:////var/lib/distcron/state.db`` (four slashes) is
absolute. Missing parent directories are created, the last one 0700, and a
new file 0600 (see :mod:`distcron.store.sqlite_files`). Options go in the query:
``poll`` (how often watches look for changes made by other processes, e.g.
``50ms``; four times less often once nothing has changed for 2 s), ``history``
(how many revisions of events watches can replay) and
``busy_timeout`` (how long a write waits for another process's, e.g. ``5s``).

Failure behaviour:

- **Lock timeout.** A write waits up to ``busy_timeout`` for another process
  that holds the write lock; after that, and on any disk or file error, the call
  raises :class:`~distcron.errors.StoreUnavailable` naming the file and the
  transaction is rolled back. Reads do not wait for writers (WAL), except a
  read that finds a lease past its deadline: it reaps it first, as a write.
- **Lease loss.** Lease deadlines are readings of ``CLOCK_MONOTONIC``
  (``time.monotonic``), which every process on one Linux machine shares and
  which wall-clock changes do not move (it pauses while the machine is
  suspended, for every process alike). That is why this backend is for one
  machine only: the file must not be shared over a network file system (WAL
  needs shared memory, which those do not provide either). A lease whose
  deadline has passed is ended by the next process to touch the store — a
  write, a read, a keepalive, or a watch's poll — which deletes its keys as one
  revision, with delete events. A process that only watches therefore sees a
  dead holder's keys vanish within one poll after the TTL. The holder learns it
  lost the lease when ``lease_keepalive`` or a ``Put`` with the lease raises
  :class:`~distcron.errors.LeaseExpired`, or when a transaction guarded by its
  key (``Compare.created_at``) returns ``succeeded=False``.
- **Reboot.** ``CLOCK_MONOTONIC`` restarts at each boot, so deadlines from a
  previous boot mean nothing: opening the file after a reboot ends every lease
  (see :func:`~distcron.store.sqlite_schema.current_boot_id`).
- **Cancellation.** Each call runs as one transaction on the store's own
  thread; a caller cancelled while it runs does not stop it, so a cancelled
  write may have been applied (as with StoreUnavailable: read it back).
- **The file removed or replaced** (``rm state.db*``, a copy put back): each
  transaction, and each poll of a watching store, compares the file at the
  path with the one open. Once they differ the store is *faulted*: every
  call raises :class:`~distcron.errors.StoreReplaced` and :meth:`wait_fault`
  returns the reason, so that a replica stops leading at once. A new process
  opens whatever file is at the path then; one that is an older copy of the
  store is recorded as restored (see :mod:`distcron.store.sqlite_engine`).
- **Closing** ends open watches (their iteration simply stops); any later call
  raises StoreUnavailable. Leases are not revoked: they expire.

One store instance belongs to one event loop.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from collections.abc import AsyncGenerator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit

from distcron.durations import parse_duration
from distcron.errors import ConfigError, StoreError, StoreReplaced, StoreUnavailable
from distcron.store.base import Compare, KeyValue, Op, Store, TxnResult, WatchBatch
from distcron.store.sqlite_engine import SqliteEngine
from distcron.store.sqlite_files import (
    create_private_file,
    make_private_dir,
    store_paths,
    warn_if_open,
)
from distcron.store.sqlite_poll import ChangePoller
from distcron.store.sqlite_schema import current_boot_id

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_POLL_INTERVAL = 0.05
DEFAULT_HISTORY = 10_000
DEFAULT_BUSY_TIMEOUT = 5.0
# A watch that replays history reads at most this many revisions per query, so
# that a long replay does not hold one huge result in memory.
WATCH_PAGE_REVISIONS = 1_000


class SqliteStore(Store):
    """The store in the SQLite file at ``path`` (see the module docstring).

    Opening is synchronous — it creates the directory, the file and its tables —
    so that a bad path fails at once, with StoreUnavailable naming it (or a
    StoreError if the file is not a store this version can use).

    ``monotonic`` is the lease clock; tests may pass a fake one, shared by every
    store instance on the file. ``boot_id`` names this boot of the machine
    (tests may pass one to simulate a reboot).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        history: int = DEFAULT_HISTORY,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        monotonic: Callable[[], float] = time.monotonic,
        boot_id: str | None = None,
    ) -> None:
        if not poll_interval > 0 or history < 1 or busy_timeout < 0:
            raise ValueError(
                f"poll_interval {poll_interval} and history {history} must be positive, "
                f"busy_timeout {busy_timeout} not negative"
            )
        self.path = Path(path).absolute()
        self._poll_interval = poll_interval
        self._monotonic = monotonic
        try:
            make_private_dir(self.path.parent)
        except OSError as exc:
            raise StoreUnavailable(
                f"sqlite store {self.path}: cannot create directory {self.path.parent}: "
                f"{exc.strerror or exc}"
            ) from exc
        try:
            create_private_file(self.path)
        except OSError as exc:
            raise StoreUnavailable(
                f"sqlite store {self.path}: cannot create it: {exc.strerror or exc}"
            ) from exc
        # One thread owns the connection: sqlite3 blocks, the event loop must not.
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="distcron-sqlite")
        try:
            self._engine = self._executor.submit(
                SqliteEngine,
                self.path,
                busy_timeout=busy_timeout,
                history=history,
                monotonic=monotonic,
                boot_id=current_boot_id() if boot_id is None else boot_id,
            ).result()
        except BaseException:
            self._executor.shutdown(wait=False)
            raise
        warn_if_open("sqlite_store", store_paths(self.path))
        self._closed = False
        self._fault: str | None = None
        self._faulted = asyncio.Event()
        # Watches wait on ``_changed``; it is set (and replaced) whenever the
        # revision is seen to move, by a local call or by the poller.
        self._changed = asyncio.Event()
        self._seen_revision = 0
        # Started by the first watch that waits; runs until close().
        self._poller: ChangePoller | None = None
        self._reaping: asyncio.Task[None] | None = None

    one_machine = True

    def __repr__(self) -> str:
        return f"SqliteStore({str(self.path)!r})"

    async def get(self, key: str) -> KeyValue | None:
        return await self._call(functools.partial(self._engine.get, key))

    async def range(self, prefix: str) -> tuple[list[KeyValue], int]:
        found, revision = await self._call(functools.partial(self._engine.range, prefix))
        # A read may have reaped an expired lease: local watches need not wait a poll.
        self._saw_revision(revision)
        return found, revision

    async def revision(self) -> int:
        revision = await self._call(self._engine.revision)
        self._saw_revision(revision)
        return revision

    async def txn(
        self,
        compare: Sequence[Compare],
        success: Sequence[Op],
        failure: Sequence[Op] = (),
    ) -> TxnResult:
        result = await self._call(
            functools.partial(self._engine.txn, tuple(compare), tuple(success), tuple(failure))
        )
        self._saw_revision(result.revision)
        return result

    async def lease_grant(self, ttl: float) -> int:
        return await self._call(functools.partial(self._engine.lease_grant, ttl))

    async def lease_keepalive(self, lease_id: int) -> float:
        return await self._call(functools.partial(self._engine.lease_keepalive, lease_id))

    async def lease_revoke(self, lease_id: int) -> None:
        await self._call(functools.partial(self._engine.lease_revoke, lease_id))
        # A revoke may delete keys: let local watches know without waiting for a poll.
        self._wake_watches()

    async def compact(self, revision: int) -> None:
        """Drop the event history up to ``revision`` (the store also does this
        by itself, keeping ``history`` revisions); watches from there raise Compacted."""
        await self._call(functools.partial(self._engine.compact, revision))

    def watch(self, prefix: str, start_revision: int) -> AsyncGenerator[WatchBatch, None]:
        """See :meth:`Store.watch`. Changes made through this instance are seen at
        once, others' within one poll interval, or four after a quiet spell (the
        first watch starts a polling thread, which runs until the store is closed).
        Close it (``aclose``) from the task that iterates it, or cancel that task."""
        if start_revision < 1:
            raise ValueError(f"watch start revision must be at least 1, got {start_revision}")
        return self._watch(prefix, start_revision)

    @property
    def fault(self) -> str | None:
        """Why this store can no longer be used (its file removed or replaced), or None."""
        return self._fault

    async def wait_fault(self) -> str:
        await self._faulted.wait()
        assert self._fault is not None
        return self._fault

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._wake_watches()
        if self._poller is not None:
            self._poller.stop()
            await asyncio.to_thread(self._poller.join)
        if self._reaping is not None:
            await asyncio.wait([self._reaping])
        # Queued behind any transaction still running, so none is cut short.
        await asyncio.get_running_loop().run_in_executor(self._executor, self._engine.close)
        self._executor.shutdown(wait=False)

    async def _watch(self, prefix: str, start_revision: int) -> AsyncGenerator[WatchBatch, None]:
        next_revision = start_revision
        while not self._closed:
            # Taken before reading, so a change made meanwhile is not missed.
            changed = self._changed
            page = await self._call(
                functools.partial(self._engine.events, prefix, next_revision, WATCH_PAGE_REVISIONS)
            )
            self._saw_revision(page.revision)
            if page.covered >= next_revision:
                next_revision = page.covered + 1
                if page.events:
                    yield WatchBatch(page.covered, page.events)
                    continue
            if page.covered < page.revision or self._closed:
                continue
            self._ensure_poller()
            await changed.wait()

    def _ensure_poller(self) -> None:
        if self._poller is None:
            self._poller = ChangePoller(
                self.path,
                self._engine.file,
                self._poll_interval,
                self._monotonic,
                asyncio.get_running_loop(),
                self._polled,
                self._faulting,
            )
            self._poller.start()

    def _polled(self, revision: int | None, lease_due: bool) -> None:
        """The poller's report: ``revision`` (``None``: its query failed), and
        whether a lease is past its deadline."""
        if self._closed:
            return
        if revision is None:
            self._wake_watches()  # they re-read, and raise if the file is unusable
            return
        self._saw_revision(revision)
        if lease_due and (self._reaping is None or self._reaping.done()):
            self._reaping = asyncio.get_running_loop().create_task(self._reap())

    async def _reap(self) -> None:
        """End the leases that are due, on the worker thread like every write."""
        if self._closed:
            return
        try:
            self._saw_revision(await self._call(self._engine.reap_due))
        except StoreError as exc:
            log.warning("event=lease_reap_failed store=%s error=%r", self.path, str(exc))

    def _faulting(self, reason: str) -> None:
        """The file is not the one open any more: no call may use it from now on."""
        if self._fault is not None:
            return
        self._fault = reason
        self._faulted.set()
        log.error("event=store_file_replaced store=%s reason=%r action=%r", self.path, reason,
                  "every call fails from now on; restart the process to open the file "
                  "now at the path")
        self._wake_watches()

    def _saw_revision(self, revision: int) -> None:
        if revision > self._seen_revision:
            self._seen_revision = revision
            self._wake_watches()

    def _wake_watches(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def _call(self, job: Callable[[], T]) -> T:
        if self._closed:
            raise StoreUnavailable(f"sqlite store {self.path} is closed")
        if self._fault is not None:
            raise StoreReplaced(self.path, self._fault)
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, job)
        except StoreReplaced as exc:
            self._faulting(exc.detail)
            raise


@dataclass(frozen=True, slots=True)
class SqliteUrl:
    """What a ``sqlite://`` URL says: the file and the store's options."""

    path: Path
    poll_interval: float = DEFAULT_POLL_INTERVAL
    history: int = DEFAULT_HISTORY
    busy_timeout: float = DEFAULT_BUSY_TIMEOUT


def parse_sqlite_url(url: str) -> SqliteUrl:
    """Parse ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``,
    with optional ``?poll=50ms&history=10000&busy_timeout=5s``. Raises ConfigError."""
    parts = urlsplit(url)
    if parts.scheme != "sqlite" or parts.netloc or not parts.path.startswith("/"):
        raise ConfigError(
            f"store URL {url!r}: expected sqlite:///relative/path.db or "
            "sqlite:////absolute/path.db (no host)"
        )
    if parts.fragment:
        raise ConfigError(f"store URL {url!r}: write '#' in a path as %23")
    path = unquote(parts.path[1:])
    if not path or path.endswith("/"):
        raise ConfigError(f"store URL {url!r}: no file name")
    options: dict[str, str] = {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name in options:
            raise ConfigError(f"store URL {url!r}: option {name!r} given twice")
        options[name] = value
    try:
        poll = parse_duration(options.pop("poll", str(DEFAULT_POLL_INTERVAL)))
        busy = parse_duration(options.pop("busy_timeout", str(DEFAULT_BUSY_TIMEOUT)))
        history = int(options.pop("history", str(DEFAULT_HISTORY)))
    except ValueError as exc:
        raise ConfigError(f"store URL {url!r}: {exc}") from exc
    if options:
        raise ConfigError(
            f"store URL {url!r}: unknown option(s) {', '.join(sorted(options))} "
            "(known: poll, history, busy_timeout)"
        )
    if poll <= 0 or history < 1:
        raise ConfigError(f"store URL {url!r}: poll and history must be positive")
    return SqliteUrl(Path(path), poll, history, busy)


def open_sqlite_store(url: str) -> SqliteStore:
    """The store a ``sqlite://`` URL names (see :func:`parse_sqlite_url`)."""
    parsed = parse_sqlite_url(url)
    return SqliteStore(
        parsed.path,
        poll_interval=parsed.poll_interval,
        history=parsed.history,
        busy_timeout=parsed.busy_timeout,
    )
