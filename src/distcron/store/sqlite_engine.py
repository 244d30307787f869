"""The SQLite store's transactions, run synchronously on the store's own thread.

:class:`SqliteEngine` owns one connection; each public method is one SQLite
transaction. Every write takes the file's write lock first (``BEGIN
IMMEDIATE``), so a transaction never reads under a shared lock and then fails
to upgrade it: two processes racing on one key queue up, and the second sees
the first's write. Reads run in a WAL snapshot and do not wait for writers.

Expired leases are reaped by whichever transaction comes first after their
deadline: a write reaps before it compares anything, and a read that finds a
lease due switches to a write so that it reaps before it reads. A read
therefore never returns a key whose lease has expired, and every deletion is
in the event log for watches to see.

Every transaction first checks that the file is still the one opened (device
and inode of the path) and that its revision has not gone back (see
:mod:`distcron.store.sqlite_files`); every write that raised the revision then
raises the high-water mark beside the file before it returns. Opening a file
whose revision is below the mark of its identity writes the restore marker
(``meta/restored``): it is an older copy put back, and the next leader records
the slots since as missed instead of running them again.

On failure: any ``sqlite3`` error (the lock still held by another process
after the busy timeout, a full or failing disk, a corrupt file) rolls the
transaction back and raises :class:`~distcron.errors.StoreUnavailable` naming
the file; nothing is ever left half applied or left open. A file removed,
replaced or gone back raises :class:`~distcron.errors.StoreReplaced`, at
every call from then on.
"""

from __future__ import annotations

import json
import logging
import secrets
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple, TypeVar

from distcron.errors import Compacted, LeaseExpired, StoreReplaced, StoreUnavailable
from distcron.store.base import Compare, Event, Get, KeyValue, Op, Put, TxnResult
from distcron.store.layout import IDENTITY, RESTORED
from distcron.store.sqlite_files import FileId, HighWater, file_problem
from distcron.store.sqlite_schema import connect
from distcron.store.txn_rules import check_key, check_txn
from distcron.timefmt import utc_iso

log = logging.getLogger(__name__)

T = TypeVar("T")

_KV_COLUMNS = "key, value, create_rev, mod_rev, version, lease"
_MAX_CODE_POINT = 0x10FFFF
# Host parameters per statement: SQLite's limit is 32,766 since 3.32, 999 before.
_CHUNK = 900


def _chunks(items: Sequence[T]) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start:start + _CHUNK]


def _marks(chunk: Sequence[object]) -> str:
    return ", ".join("?" * len(chunk))


def prefix_end(prefix: str) -> str | None:
    """The smallest string above every string starting with ``prefix``
    (``None``: no bound), like etcd's range end for a prefix.

    SQLite compares TEXT with memcmp on UTF-8, which orders strings by code
    point, as Python does; so ``prefix <= key < prefix_end(prefix)`` is an
    index range scan.
    """
    stripped = prefix.rstrip(chr(_MAX_CODE_POINT))
    if not stripped:
        return None
    bumped = ord(stripped[-1]) + 1
    if 0xD800 <= bumped <= 0xDFFF:
        bumped = 0xE000  # surrogates cannot be encoded in UTF-8; none is in a key
    return stripped[:-1] + chr(bumped)


def _where(key: str, prefix: bool) -> tuple[str, tuple[str, ...]]:
    """A SQL condition on ``key`` selecting one key or a prefix, with its parameters."""
    if not prefix:
        return "key = ?", (key,)
    end = prefix_end(key)
    if end is None:
        return "key >= ?", (key,)
    return "key >= ? AND key < ?", (key, end)


class EventPage(NamedTuple):
    """What a watch read: events of revisions up to ``covered``, and the store's
    ``revision`` then (``covered < revision``: more is waiting)."""

    covered: int
    events: tuple[Event, ...]
    revision: int


@dataclass
class _Tx:
    """An open write transaction. It may make up to two store revisions: one
    for the leases it reaps, then one for the caller's writes."""

    conn: sqlite3.Connection
    now: float
    revision: int
    compacted: int
    _seq: int = 0  # events written so far at revision + 1

    @property
    def pending(self) -> int:
        """The revision the next write gets."""
        return self.revision + 1

    def seal(self) -> None:
        """Close the pending revision if anything was written at it."""
        if self._seq:
            self.revision += 1
            self._seq = 0

    def holds_all(self, compares: Sequence[Compare]) -> bool:
        found = self._found(c.key for c in compares)
        return all(c.holds(found.get(c.key)) for c in compares)

    def apply_all(self, ops: Sequence[Op]) -> tuple[tuple[KeyValue, ...] | int | None, ...]:
        """Apply ``ops`` in order; a run of puts is written in one statement per table
        (a 100,000-job file is 200,000 puts)."""
        results: list[tuple[KeyValue, ...] | int | None] = []
        puts: list[Put] = []
        for op in ops:
            if isinstance(op, Put):
                puts.append(op)
                results.append(None)
                continue
            self.put_many(puts)
            puts = []
            if isinstance(op, Get):
                results.append(self.read(op))
            else:
                where, params = _where(op.key, op.prefix)
                results.append(self.delete(where, params))
        self.put_many(puts)
        return tuple(results)

    def read(self, op: Get) -> tuple[KeyValue, ...]:
        where, params = _where(op.key, op.prefix)
        rows = self.conn.execute(f"SELECT {_KV_COLUMNS} FROM kv WHERE {where} ORDER BY key",
                                 params)
        return tuple(KeyValue(*row) for row in rows)

    def put_many(self, puts: Sequence[Put]) -> None:
        if not puts:
            return
        leases = sorted({op.lease for op in puts if op.lease})
        if leases:
            alive = {row[0] for chunk in _chunks(leases) for row in self.conn.execute(
                f"SELECT id FROM lease WHERE id IN ({_marks(chunk)})", chunk)}
            for op in puts:
                if op.lease and op.lease not in alive:
                    raise LeaseExpired(op.lease)
        known = {key: (kv.create_revision, kv.version)
                 for key, kv in self._found(op.key for op in puts).items()}
        rev = self.pending
        kv_rows, event_rows = [], []
        for op in puts:
            create_rev, version = known.get(op.key, (rev, 0))
            known[op.key] = (create_rev, version + 1)
            kv_rows.append((op.key, op.value, create_rev, rev, version + 1, op.lease))
            event_rows.append((rev, self._seq, False, op.key, op.value, create_rev,
                               version + 1, op.lease))
            self._seq += 1
        self.conn.executemany(
            "INSERT INTO kv (key, value, create_rev, mod_rev, version, lease)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET"
            " value = excluded.value, mod_rev = excluded.mod_rev,"
            " version = excluded.version, lease = excluded.lease", kv_rows)
        self.conn.executemany(
            "INSERT INTO event (revision, seq, deleted, key, value, create_rev, version, lease)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)", event_rows)

    def _found(self, keys: Iterable[str]) -> dict[str, KeyValue]:
        """Those of ``keys`` that are present."""
        wanted = list(dict.fromkeys(keys))
        return {row[0]: KeyValue(*row) for chunk in _chunks(wanted) for row in self.conn.execute(
            f"SELECT {_KV_COLUMNS} FROM kv WHERE key IN ({_marks(chunk)})", chunk)}

    def delete(self, where: str, params: tuple[object, ...]) -> int:
        """Delete the keys matching ``where``; their delete events go in key order, as etcd's."""
        keys = self.conn.execute(f"DELETE FROM kv WHERE {where} RETURNING key", params).fetchall()
        for (key,) in sorted(keys):
            self._log(True, key, b"", 0, 0, 0)
        return len(keys)

    def end_leases(self, where: str, params: tuple[object, ...]) -> list[int]:
        """Delete the leases matching ``where`` and every key attached to them, as
        one revision; returns the leases' ids."""
        leases = [
            lease_id
            for (lease_id,) in self.conn.execute(f"SELECT id FROM lease WHERE {where}", params)
        ]
        if leases:
            self.delete(f"lease IN (SELECT id FROM lease WHERE {where})", params)
            self.conn.execute(f"DELETE FROM lease WHERE {where}", params)
            self.seal()
        return leases

    def _log(
        self, deleted: bool, key: str, value: bytes, create_rev: int, version: int, lease: int
    ) -> None:
        self.conn.execute(
            "INSERT INTO event (revision, seq, deleted, key, value, create_rev, version, lease)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (self.pending, self._seq, deleted, key, value, create_rev, version, lease),
        )
        self._seq += 1


class SqliteEngine:
    """One connection to a store file and the transactions on it.

    Not thread-safe: create it and call it on one thread. ``monotonic`` must be
    the machine's ``CLOCK_MONOTONIC`` (``time.monotonic``) in every process that
    shares the file — or, in tests, one fake clock shared by every engine.
    """

    def __init__(
        self,
        path: Path,
        *,
        busy_timeout: float,
        history: int,
        monotonic: Callable[[], float],
        boot_id: str,
    ) -> None:
        self.path = path
        self._history = history
        # Compact in steps of a tenth of the history so that most writes don't.
        self._compact_step = max(1, history // 10)
        self._monotonic = monotonic
        self._boot_id = boot_id
        self._highwater = HighWater(path)
        self._seen = 0  # the highest revision this engine has seen in the file
        with self._errors():
            self._conn = connect(path, busy_timeout)
        file = FileId.of(path)
        if file is None:
            self._conn.close()
            raise StoreUnavailable(f"sqlite store {path}: removed while it was being opened")
        self.file = file
        # A first write transaction ends the leases of a previous boot at once,
        # and records a restore from a copy.
        with self._write() as tx:
            restored = self._mark_restore(tx)
        if restored is not None:
            self._mark(restored, tx.revision, lower=True)

    def close(self) -> None:
        self._conn.close()

    def check_file(self) -> str | None:
        """Why the file at the path is not the one open (removed or replaced), or None."""
        return file_problem(self.path, self.file)

    # -- reads ----------------------------------------------------------------

    def get(self, key: str) -> KeyValue | None:
        check_key(key)
        found, _ = self._read(lambda tx: tx.read(Get(key)))
        return found[0] if found else None

    def range(self, prefix: str) -> tuple[list[KeyValue], int]:
        found, revision = self._read(lambda tx: tx.read(Get(prefix, prefix=True)))
        return list(found), revision

    def revision(self) -> int:
        return self._read(lambda tx: None)[1]

    def reap_due(self) -> int:
        """End the leases that are past their deadline, if any (checking costs
        one indexed query); returns the store's revision."""
        with self._errors():
            revision, soonest = self._conn.execute(
                "SELECT revision, (SELECT min(deadline) FROM lease) FROM state"
            ).fetchone()
            if soonest is None or soonest > self._monotonic():
                return int(revision)
        with self._write() as tx:
            pass
        return tx.revision

    def events(self, prefix: str, start: int, max_revisions: int) -> EventPage:
        """Events under ``prefix`` of revisions ``start`` to at most
        ``start + max_revisions - 1``. Raises Compacted."""
        where, params = _where(prefix, True)
        with self._errors(), self._transaction("BEGIN"):
            revision, compacted = self._conn.execute(
                "SELECT revision, compacted FROM state"
            ).fetchone()
            self._check(revision)
            if start <= compacted:
                raise Compacted(start, compacted + 1)
            last = min(revision, start + max_revisions - 1)
            rows = self._conn.execute(
                "SELECT revision, deleted, key, value, create_rev, version, lease FROM event"
                f" WHERE revision BETWEEN ? AND ? AND {where} ORDER BY revision, seq",
                (start, last, *params),
            ).fetchall()
        events = tuple(
            Event("delete", KeyValue(key, b"", 0, rev, 0, 0))
            if deleted
            else Event("put", KeyValue(key, value, create_rev, rev, version, lease))
            for rev, deleted, key, value, create_rev, version, lease in rows
        )
        return EventPage(last, events, revision)

    # -- writes ---------------------------------------------------------------

    def txn(
        self, compare: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op]
    ) -> TxnResult:
        check_txn(compare, success, failure)
        with self._write() as tx:
            succeeded = tx.holds_all(compare)
            results = tx.apply_all(success if succeeded else failure)
        return TxnResult(succeeded, tx.revision, results)

    def lease_grant(self, ttl: float) -> int:
        if not ttl > 0:
            raise ValueError(f"lease TTL must be positive, got {ttl}")
        with self._write() as tx:
            while True:
                # Random ids, not a counter: a lease id from a previous file or
                # boot can never be mistaken for a new one.
                lease_id = secrets.randbits(63)
                if lease_id and tx.conn.execute(
                    "INSERT OR IGNORE INTO lease (id, ttl, deadline) VALUES (?, ?, ?)",
                    (lease_id, ttl, tx.now + ttl),
                ).rowcount:
                    return lease_id

    def lease_keepalive(self, lease_id: int) -> float:
        with self._write() as tx:
            row = tx.conn.execute(
                "UPDATE lease SET deadline = ? + ttl WHERE id = ? RETURNING ttl",
                (tx.now, lease_id),
            ).fetchone()
        # Raised after the commit, so that the reaping that found it gone stays done.
        if row is None:
            raise LeaseExpired(lease_id)
        return float(row[0])

    def lease_revoke(self, lease_id: int) -> None:
        with self._write() as tx:
            tx.end_leases("id = ?", (lease_id,))

    def compact(self, revision: int) -> None:
        """Drop the event history up to ``revision``: watches from it or older
        raise Compacted. Compacting further back than already done is a no-op."""
        with self._write() as tx:
            if revision > tx.revision:
                raise ValueError(
                    f"cannot compact revision {revision}: the store is at {tx.revision}"
                )
            self._compact(tx, revision)

    # -- transactions -----------------------------------------------------------

    def _read(self, body: Callable[[_Tx], T]) -> tuple[T, int]:
        """Run ``body`` in a snapshot; or, if a lease is due, in a write that reaps it first."""
        with self._errors(), self._transaction("BEGIN"):
            revision, soonest = self._conn.execute(
                "SELECT revision, (SELECT min(deadline) FROM lease) FROM state"
            ).fetchone()
            self._check(revision)
            # The clock is read after the snapshot began (at that first SELECT):
            # every lease in it not due now was alive when it was taken.
            now = self._monotonic()
            if soonest is None or soonest > now:
                return body(_Tx(self._conn, now, revision, 0)), revision
        with self._write() as tx:
            return body(tx), tx.revision

    @contextmanager
    def _write(self) -> Iterator[_Tx]:
        """A write transaction that has reaped due leases; commits when the block ends."""
        with self._errors(), self._transaction("BEGIN IMMEDIATE"):
            revision, compacted, boot_id = self._conn.execute(
                "SELECT revision, compacted, boot_id FROM state"
            ).fetchone()
            self._check(revision)
            # The clock is read once the write lock is ours, not before the wait for it.
            tx = _Tx(self._conn, self._monotonic(), revision, compacted)
            rebooted = boot_id != self._boot_id
            if rebooted:
                ended = tx.end_leases("1", ())
                self._conn.execute("UPDATE state SET boot_id = ?", (self._boot_id,))
            else:
                ended = tx.end_leases("deadline <= ?", (tx.now,))
            yield tx
            tx.seal()
            identity = None
            if tx.revision != revision:
                self._conn.execute("UPDATE state SET revision = ?", (tx.revision,))
                if tx.revision - tx.compacted >= self._history + self._compact_step:
                    self._compact(tx, tx.revision - self._history)
                identity = self._identity()
        self._seen = max(self._seen, tx.revision)
        # Told once committed: a write that failed (a full disk) ended nothing.
        if ended and rebooted:
            log.warning("event=leases_ended store=%s cause=reboot leases=%d", self.path,
                        len(ended))
        elif ended:
            log.info("event=leases_expired store=%s leases=%s", self.path,
                     ",".join(f"{lease_id:#x}" for lease_id in ended))
        if identity is not None:
            # After the commit, before the caller acts on it: a copy taken
            # before this write is known to be older.
            self._mark(identity, tx.revision)

    def _check(self, revision: int) -> None:
        """Raise StoreReplaced if the file is not the one opened or went back."""
        problem = self.check_file()
        if problem is None and revision < self._seen:
            problem = (f"the file went back from revision {self._seen} to {revision} "
                       "(an older copy was put in its place)")
        if problem is not None:
            raise StoreReplaced(self.path, problem)
        self._seen = revision

    def _identity(self) -> str | None:
        row = self._conn.execute("SELECT value FROM kv WHERE key = ?", (IDENTITY,)).fetchone()
        return None if row is None else bytes(row[0]).decode(errors="replace")

    def _mark(self, identity: str, revision: int, *, lower: bool = False) -> None:
        try:
            self._highwater.set(identity, revision, lower=lower)
        except OSError as exc:
            raise StoreUnavailable(
                f"sqlite store {self.path}: cannot write its high-water mark "
                f"{self._highwater.path}: {exc.strerror or exc}") from exc

    def _mark_restore(self, tx: _Tx) -> str | None:
        """In the first write: if the file is older than its high-water mark,
        write the restore marker; returns the identity whose mark to lower."""
        identity = self._identity()
        if identity is None:
            return None
        try:
            seen = self._highwater.get(identity)
        except OSError as exc:
            raise StoreUnavailable(
                f"sqlite store {self.path}: cannot read its high-water mark "
                f"{self._highwater.path}: {exc.strerror or exc}") from exc
        if tx.revision >= seen:
            return None
        marker = {"at": utc_iso(datetime.now(UTC)), "cause": "file",
                  "revision": tx.revision, "seen_revision": seen}
        tx.put_many([Put(RESTORED, json.dumps(marker).encode())])
        log.warning("event=store_restored_from_copy store=%s revision=%d seen_revision=%d "
                    "action=%r", self.path, tx.revision, seen,
                    "slots due until now are recorded missed, not run again")
        return identity

    def _compact(self, tx: _Tx, revision: int) -> None:
        if revision > tx.compacted:
            self._conn.execute("DELETE FROM event WHERE revision <= ?", (revision,))
            self._conn.execute("UPDATE state SET compacted = ?", (revision,))
            tx.compacted = revision

    @contextmanager
    def _transaction(self, begin: str) -> Iterator[None]:
        """Commit when the block ends, roll back when it raises."""
        self._conn.execute(begin)
        try:
            yield
            self._conn.execute("COMMIT")
        except BaseException:
            # SQLite has already rolled back after some I/O errors, and then
            # the first error is the one worth reporting.
            with suppress(sqlite3.Error):
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
            raise

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """Translate SQLite's errors into StoreUnavailable naming the file."""
        try:
            yield
        except sqlite3.Error as exc:
            detail = str(exc)
            if "locked" in detail or "busy" in detail:
                detail += " (another process held the write lock past the busy timeout)"
            raise StoreUnavailable(f"sqlite store {self.path}: {detail}") from exc
