"""The SQLite store's file: its tables, and how a connection to it is opened.

Everything authoritative lives in the file, so that several processes on one
machine (a leader and its hot standby) can share it:

- ``state``: one row — the store's revision, the newest revision compacted out
  of the event log, and the boot id of the machine that last wrote lease
  deadlines (see :func:`current_boot_id`).
- ``kv``: the live keys with their etcd metadata.
- ``lease``: live leases, each with its TTL and its deadline on the machine's
  ``CLOCK_MONOTONIC``.
- ``event``: the change log that watches read, ``(revision, seq)`` ordered.
  A delete event keeps only the key (value ``b""``, create/version/lease 0), as
  etcd's do.

Connections use WAL (readers never wait for the writer), ``synchronous=FULL``
(a commit is on disk before it returns: a launch intent must survive a power
cut, or the next leader could launch the slot again) and a busy timeout, so a
writer waits for another process's write instead of failing at once.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from distcron.errors import StoreError

SCHEMA_VERSION = 1

# Revision of an empty store: etcd starts at 1 too, so that 0 can mean "absent"
# in create_revision/mod_revision.
INITIAL_REVISION = 1

_DDL = f"""
CREATE TABLE IF NOT EXISTS state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    revision INTEGER NOT NULL,
    compacted INTEGER NOT NULL,
    boot_id TEXT NOT NULL
);
INSERT OR IGNORE INTO state (id, revision, compacted, boot_id)
    VALUES (1, {INITIAL_REVISION}, 0, '');
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY,
    value BLOB NOT NULL,
    create_rev INTEGER NOT NULL,
    mod_rev INTEGER NOT NULL,
    version INTEGER NOT NULL,
    lease INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS kv_by_lease ON kv (lease) WHERE lease != 0;
CREATE TABLE IF NOT EXISTS lease (
    id INTEGER PRIMARY KEY,
    ttl REAL NOT NULL,
    deadline REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS lease_by_deadline ON lease (deadline);
CREATE TABLE IF NOT EXISTS event (
    revision INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    create_rev INTEGER NOT NULL,
    version INTEGER NOT NULL,
    lease INTEGER NOT NULL,
    PRIMARY KEY (revision, seq)
) WITHOUT ROWID;
"""


class SchemaError(StoreError):
    """The file is not a distcron store this code can use; retrying will not help."""

    def __init__(self, path: Path, detail: str) -> None:
        super().__init__(f"sqlite store {path}: {detail}")
        self.path = path


def connect(path: Path, busy_timeout: float) -> sqlite3.Connection:
    """A connection to the existing file ``path``, with the schema in place.

    Raises ``sqlite3.Error`` (the caller names the file) or SchemaError. The
    connection is in autocommit mode: every transaction is an explicit
    ``BEGIN``/``COMMIT``, so none is ever left open by the driver.
    """
    # mode=rw: the caller made the file (0600); one removed since is not made again.
    conn = sqlite3.connect(f"{path.absolute().as_uri()}?mode=rw", uri=True,
                           timeout=busy_timeout, isolation_level=None)
    try:
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode != "wal":
            # e.g. a network file system: processes could not share the file safely.
            raise SchemaError(path, f"cannot use WAL mode (got {mode!r})")
        conn.execute("PRAGMA synchronous=FULL")
        # IMMEDIATE: two processes creating the schema at once take turns.
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                raise SchemaError(
                    path, f"schema version {version}, this distcron reads {SCHEMA_VERSION}"
                )
            if version == 0:
                for statement in _DDL.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    except BaseException:
        conn.close()
        raise
    return conn


def current_boot_id() -> str:
    """An id of this boot of the machine.

    Lease deadlines are ``CLOCK_MONOTONIC`` readings, which restart near 0 at
    each boot: a deadline written before a reboot means nothing after it. Linux
    names each boot in ``/proc/sys/kernel/random/boot_id``; elsewhere the boot
    instant, estimated from the wall clock to the minute, stands in (a wall
    clock step of more than a minute between two opens then ends every lease —
    safe, as holders re-acquire them).
    """
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return f"boot@{round((time.time() - time.monotonic()) / 60)}"
