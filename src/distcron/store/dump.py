"""Snapshots: every key of distcron's state at one store revision, in a file, and
back into an empty store, of either backend.

The file is JSON lines: a header (``format``, ``version``, the ``revision`` and
time it was taken, how many keys follow), one line per key (its name, and its
value in base64), and a trailer repeating the count with a SHA-256 of every key
line, so that a truncated or altered file is refused before anything is
written. What lives only while its owner does (the leader key, replica and
worker registrations) is not saved: a restored store starts without a leader.

A restore writes into an empty store only, in transactions within the store's
size limit, and adds the restore marker (``meta/restored``) with the instant of
the restore: the first leader records every slot that fell due between the
snapshot and the restore as missed, never runs it (fail closed). The store's
identity is not restored: the restored store is a new incarnation.

On failure: a bad file raises :class:`SnapshotError` naming the line and what is
wrong, and nothing is written; a store that is not empty is refused the same
way. A restore cut short (the store unreachable) leaves a partial store without
the restore marker; restoring again into it is refused as not empty: empty it
(a new SQLite file, a new etcd prefix) and restore again.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any

from distcron.errors import DistcronError
from distcron.store.base import Put, Store
from distcron.store.layout import IDENTITY, LEADER, REPLICAS, RESTORED, WORKERS
from distcron.timefmt import utc_iso

FORMAT = "distcron-snapshot"
VERSION = 1
_NOT_SAVED = (LEADER, REPLICAS, WORKERS)
_RESTORE_BATCH = 100


class SnapshotError(DistcronError):
    """A snapshot file that cannot be restored, or a store it cannot go into."""


@dataclass(frozen=True, slots=True)
class Summary:
    revision: int
    keys: int
    taken_at: str


async def save(store: Store, out: IO[str], now: datetime) -> Summary:
    """Write every key of ``store`` at one revision to ``out``."""
    kvs, revision = await store.range("")
    kept = [kv for kv in kvs if not kv.key.startswith(_NOT_SAVED)]
    summary = Summary(revision, len(kept), utc_iso(now))
    out.write(json.dumps({"format": FORMAT, "version": VERSION, "revision": revision,
                          "taken_at": summary.taken_at, "keys": len(kept)}) + "\n")
    digest = hashlib.sha256()
    for kv in kept:
        line = json.dumps({"key": kv.key, "value": base64.b64encode(kv.value).decode()})
        digest.update(line.encode())
        out.write(line + "\n")
    out.write(json.dumps({"end": len(kept), "sha256": digest.hexdigest()}) + "\n")
    return summary


def read(lines: Iterable[str]) -> tuple[dict[str, Any], list[tuple[str, bytes]]]:
    """The header and the keys of a snapshot file, checked whole."""
    numbered = enumerate(lines, start=1)
    header = _line(next(numbered, (1, "")), "the header")
    if header.get("format") != FORMAT:
        raise SnapshotError(f"line 1: not a {FORMAT} file")
    if header.get("version") != VERSION:
        raise SnapshotError(f"line 1: format version {header.get('version')!r}; this "
                            f"distcron reads version {VERSION}")
    keys: list[tuple[str, bytes]] = []
    digest = hashlib.sha256()
    for number, text in numbered:
        entry = _line((number, text), "a key")
        if "end" in entry:
            if entry["end"] != len(keys) or entry.get("sha256") != digest.hexdigest():
                raise SnapshotError(f"line {number}: the file does not match its trailer "
                                    "(altered)")
            if len(keys) != header.get("keys"):
                raise SnapshotError(f"line {number}: {len(keys)} keys, the header says "
                                    f"{header.get('keys')}")
            return header, keys
        try:
            keys.append((str(entry["key"]), base64.b64decode(entry["value"], validate=True)))
        except (KeyError, ValueError, TypeError):
            raise SnapshotError(f"line {number}: not a key and a base64 value") from None
        digest.update(text.rstrip("\n").encode())
    raise SnapshotError(f"the file ends after {len(keys)} keys without its trailer "
                        "(truncated)")


async def restore(store: Store, lines: Iterable[str], now: datetime) -> Summary:
    """Load a snapshot into an empty store (see the module docstring)."""
    header, keys = read(lines)
    present, _ = await store.range("")
    if present:
        raise SnapshotError(f"the store is not empty ({len(present)} keys, e.g. "
                            f"{present[0].key!r}); restore into an empty one")
    keys = [(key, value) for key, value in keys if key not in (IDENTITY, RESTORED)]
    limit = min(store.max_txn_ops or _RESTORE_BATCH, _RESTORE_BATCH)
    for batch in _batches(keys, limit):
        await store.txn([], [Put(key, value) for key, value in batch])
    marker = json.dumps({"at": utc_iso(now), "snapshot_revision": header["revision"],
                         "snapshot_taken_at": header.get("taken_at")})
    await store.put(RESTORED, marker.encode())
    return Summary(int(header["revision"]), len(keys), str(header.get("taken_at")))


def _line(numbered: tuple[int, str], what: str) -> dict[str, Any]:
    number, text = numbered
    try:
        entry = json.loads(text)
    except ValueError:
        raise SnapshotError(f"line {number}: {what} expected, not JSON") from None
    if not isinstance(entry, dict):
        raise SnapshotError(f"line {number}: {what} expected")
    return entry


def _batches(items: list[tuple[str, bytes]], size: int) -> Iterator[list[tuple[str, bytes]]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
