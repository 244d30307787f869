"""The jobs (and ``[[notifier]]`` tables) of a replica's config file, reconciled
with the store's.

The file is the whole set of its own jobs: those it names are added or
updated, its own that it no longer names are removed, and jobs of another
source (applied through the API, taken over, or another config file's) are
left as they are (see :mod:`distcron.jobs.jobset`). A job is the file's by its
absolute path, so a replica started from another directory still knows it.

Several replicas may start with the same file at once: the write is guarded
by every job key it read, so one wins and the others, retrying, find nothing
left to change.

A restart with the same file is the common case, and with 100,000 jobs
validating and comparing them all takes seconds. So once a file is applied,
``synced/<hash of its path>`` records the digest of its text (and of the
distcron version that read it) beside a digest of every job and notifier key
with its revision, as the apply left them. When both still match at the next
start, nothing can have changed since and the file is not read again: a job
changed, added or removed by anyone since changes the second digest. (A
schedule that has run out of slots since is then not refused at the edge; the
leader quarantines it.)
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
from collections.abc import Iterable, Mapping
from typing import Any

import distcron
from distcron.clock import Clock
from distcron.errors import Conflict
from distcron.jobs import (
    JobsDiff,
    JobsFile,
    diff_jobs,
    diff_notifiers,
    fits_one_transaction,
    parse_jobs_file,
    write_diff,
)
from distcron.store import Store
from distcron.store.base import Delete, KeyValue, Put
from distcron.store.layout import JOBS, NOTIFIERS, name_of, synced_key

log = logging.getLogger("distcron.serve")

_ATTEMPTS = 5


def file_source(path: str) -> str:
    """The source recorded on a config file's jobs: its absolute path."""
    return os.path.abspath(path)


async def apply_config_jobs(store: Store, text: str, source: str, clock: Clock,
                            document: dict[str, Any] | None = None) -> None:
    """Validate every job first (a bad file changes nothing), then reconcile the
    file's own jobs; ``source`` is the file's path; ``document``, ``text``
    parsed already, if it was."""
    owner = file_source(source)
    text_digest = hashlib.sha256(f"{distcron.__version__}\0{text}".encode()).hexdigest()
    found: JobsFile | None = None
    for _ in range(_ATTEMPTS):
        kvs, revision = await store.range(JOBS)
        notifier_kvs, notifiers_revision = await store.range(NOTIFIERS)
        synced = await store.get(synced_key(owner))
        if synced is not None and _still_synced(synced.value, text_digest, kvs + notifier_kvs):
            log.info("event=jobs_file_unchanged file=%s jobs=%d", source, len(kvs))
            _log_kept(source, json.loads(synced.value))
            return
        if found is None:
            found = await asyncio.to_thread(parse_jobs_file, text, source, ("serve",),
                                            clock.now(), None, document)
        stored = {name_of(kv.key, JOBS): kv for kv in kvs}
        notifiers = {name_of(kv.key, NOTIFIERS): kv for kv in notifier_kvs}
        diff = diff_jobs(found.jobs, stored, source=owner, prune=True, now=clock.now())
        diff_notifiers(diff, found.jobs, found.notifiers, notifiers, source=owner, prune=True,
                       file=source)
        kept = {"kept": diff.kept, "notifiers_kept": diff.notifiers_kept}
        _log_kept(source, kept)
        if not diff.changes:
            await _mark_synced(store, owner, text_digest, kvs + notifier_kvs, kept)
            return
        try:
            written = await write_diff(store, diff, clock.now())
        except Conflict:
            continue
        log.info("event=jobs_applied file=%s added=%d changed=%d removed=%d notifiers_added=%d "
                 "notifiers_changed=%d notifiers_removed=%d", source, len(diff.added),
                 len(diff.changed), len(diff.removed), len(diff.notifiers_added),
                 len(diff.notifiers_changed), len(diff.notifiers_removed))
        if fits_one_transaction(store, diff):
            # All written at one revision: the keys as it left them are known.
            await _mark_synced(store, owner, text_digest, _written(kvs + notifier_kvs, diff,
                                                                   written), kept)
            return
        after = (await store.range(JOBS))[0] + (await store.range(NOTIFIERS))[0]
        if _only_this_write(kvs + notifier_kvs, diff, after, min(revision, notifiers_revision),
                            written):
            await _mark_synced(store, owner, text_digest, after, kept)
        return
    raise Conflict(JOBS, f"jobs kept changing while {source} was applied")


def _log_kept(source: str, kept: Mapping[str, Mapping[str, str | None]]) -> None:
    for name, other in sorted(kept.get("kept", {}).items()):
        log.warning("event=job_kept file=%s job=%s source=%s reason=%r", source, name,
                    other, "another source owns it, so the file's version is not applied; "
                    "remove it (jobs remove --take-over) for the file to own it")
    for name, other in sorted(kept.get("notifiers_kept", {}).items()):
        log.warning("event=notifier_kept file=%s notifier=%s source=%s reason=%r", source,
                    name, other, "another source owns it, so the file's version is not "
                    "applied")


def _keys_digest(kvs: Iterable[KeyValue]) -> str:
    """Changes when any job or notifier key is added, removed or written."""
    lines = sorted(f"{kv.key}\0{kv.mod_revision}" for kv in kvs)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def _still_synced(value: bytes, text_digest: str, kvs: Iterable[KeyValue]) -> bool:
    try:
        record = json.loads(value)
        return bool(record["text"] == text_digest and record["keys"] == _keys_digest(kvs))
    except (ValueError, KeyError, TypeError):
        return False


async def _mark_synced(store: Store, owner: str, text_digest: str, kvs: Iterable[KeyValue],
                       kept: Mapping[str, Mapping[str, str | None]]) -> None:
    record = {"file": owner, "text": text_digest, "keys": _keys_digest(kvs), **kept}
    await store.put(synced_key(owner), json.dumps(record).encode())


def _touched(diff: JobsDiff) -> tuple[set[str], set[str]]:
    """The job and notifier keys the diff puts, and those it deletes."""
    put: set[str] = set()
    deleted: set[str] = set()
    for _, ops in diff.groups:
        for op in ops:
            if isinstance(op, Put) and op.key.startswith((JOBS, NOTIFIERS)):
                put.add(op.key)
            elif isinstance(op, Delete):
                deleted.add(op.key)
    return put, deleted


def _written(before: Iterable[KeyValue], diff: JobsDiff, revision: int) -> list[KeyValue]:
    """The job and notifier keys after the diff was written in one transaction at
    ``revision``, as far as their keys and revisions go (what the digest covers).
    If anyone wrote besides, the store differs and the next start applies the file."""
    put, deleted = _touched(diff)
    keys = {kv.key: kv for kv in before if kv.key not in deleted}
    keys.update((key, KeyValue(key, b"", 0, revision, 0)) for key in put)
    return list(keys.values())


def _only_this_write(before: Iterable[KeyValue], diff: JobsDiff, after: Iterable[KeyValue],
                     read_at: int, written: int) -> bool:
    """Whether ``after`` is ``before`` with the diff written (between revisions
    ``read_at`` and ``written``) and nothing else: only then does the record
    say truly what the file left."""
    put, deleted = _touched(diff)
    expected = {kv.key: kv.mod_revision for kv in before if kv.key not in deleted}
    found = {kv.key: kv.mod_revision for kv in after}
    if found.keys() != expected.keys() | put:
        return False
    return all(read_at < found[key] <= written if key in put else found[key] == expected[key]
               for key in found)
