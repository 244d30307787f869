"""Writing a jobs diff whole, even one larger than a store transaction.

A diff that fits one transaction is written in one, guarded as the diff says
and by :data:`~distcron.store.layout.APPLY` being absent. A larger one (etcd's
``--max-txn-ops``) goes through a journal:

1. Its writes are stored as chunks under ``applying/<id>/<n>``, which no
   reader of jobs looks at: killed here, nothing changed (the chunks are
   garbage, which the leader removes).
2. ``APPLY`` is created (``state: checking``) if absent. From then on every
   other writer of ``jobs/`` and ``notifiers/`` is refused (each of their
   transactions compares ``APPLY`` absent), so the guards, too many for one
   transaction, are checked by one read of those prefixes. One failing: APPLY
   and the chunks are deleted, nothing was written (:class:`Conflict`).
3. ``APPLY`` becomes ``state: writing``: the commit point. The parts are
   written, each guarded by APPLY's value; the last deletes APPLY.
4. If the applier dies, the leader finishes a ``writing`` apply (the same
   idempotent writes, :func:`finish_apply`) and drops a ``checking`` one; an
   applier that comes back finds its guard failing and reports the outcome.

Readers: the leader's mirror holds ``jobs/`` and ``notifiers/`` changes back
while APPLY exists and delivers them when it is deleted, so the scheduler
never runs a half-applied set. API reads of jobs may show one mid-apply.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Sequence
from datetime import datetime

from distcron.errors import Conflict
from distcron.store import Compare, Delete, KeyValue, Op, Put, Store
from distcron.store.layout import APPLY, APPLYING, JOBS, NOTIFIERS
from distcron.timefmt import utc_iso

log = logging.getLogger("distcron.jobs")

CHECKING = "checking"
WRITING = "writing"
IN_PROGRESS = "an apply is in progress (meta/apply exists): try again when it is finished"


def no_apply() -> Compare:
    """The comparison every writer of ``jobs/`` or ``notifiers/`` carries."""
    return Compare.missing(APPLY)


async def refusal(store: Store, key: str, detail: str) -> Conflict:
    """The Conflict for a failed guarded write of ``key``: says so when an apply held it."""
    if await store.get(APPLY) is not None:
        return Conflict(key, IN_PROGRESS)
    return Conflict(key, detail)


def encode_ops(ops: Sequence[Op]) -> bytes:
    items: list[dict[str, str]] = []
    for op in ops:
        if isinstance(op, Put):
            items.append({"put": op.key, "value": op.value.decode()})
        elif isinstance(op, Delete) and not op.prefix:
            items.append({"delete": op.key})
        else:
            raise ValueError(f"a journal holds puts and single-key deletes, not {op!r}")
    return json.dumps(items).encode()


def decode_ops(raw: bytes) -> list[Put | Delete]:
    ops: list[Put | Delete] = []
    for item in json.loads(raw):
        if "put" in item:
            ops.append(Put(str(item["put"]), str(item["value"]).encode()))
        else:
            ops.append(Delete(str(item["delete"])))
    return ops


def _marker(apply_id: str, chunks: int, state: str, started: str) -> bytes:
    return json.dumps({"id": apply_id, "chunks": chunks, "state": state,
                       "started": started}, sort_keys=True).encode()


async def write_journaled(store: Store, compares: Sequence[Compare], ops: Sequence[Op],
                          limit: int, now: datetime) -> int:
    """Write ``ops`` whole if every compare (on ``jobs/`` and ``notifiers/`` keys)
    holds, in transactions of at most ``limit`` operations; returns the revision
    that completed the apply. Raises Conflict, nothing written, otherwise."""
    apply_id = uuid.uuid4().hex
    per_part = max(1, limit - 1)  # the last part also deletes APPLY
    parts = [list(ops[start:start + per_part]) for start in range(0, len(ops), per_part)]
    parts = parts or [[]]
    chunks = [f"{APPLYING}{apply_id}/{n}" for n in range(len(parts))]
    for key, part in zip(chunks, parts, strict=True):
        await store.put(key, encode_ops(part))
    started = utc_iso(now)
    checking = _marker(apply_id, len(parts), CHECKING, started)
    # The leader's clean-up deletes a journal whole: its first or last chunk is gone.
    commit = [no_apply(), Compare.exists(chunks[0]), Compare.exists(chunks[-1])]
    if not (await store.txn(commit, [Put(APPLY, checking)])).succeeded:
        await store.delete(f"{APPLYING}{apply_id}/", prefix=True)
        raise await refusal(store, JOBS, "the leader removed this apply's journal, "
                            "taking it for a dead one's; nothing was written, apply again")
    current: dict[str, KeyValue] = {}
    for prefix in (JOBS, NOTIFIERS):
        current.update((kv.key, kv) for kv in (await store.range(prefix))[0])
    failed = [compare.key for compare in compares if not compare.holds(current.get(compare.key))]
    writing = _marker(apply_id, len(parts), WRITING, started)
    if failed or not (await store.txn([Compare.value_is(APPLY, checking)],
                                      [Put(APPLY, writing)])).succeeded:
        await store.txn([Compare.value_is(APPLY, checking)], [Delete(APPLY)])
        await store.delete(f"{APPLYING}{apply_id}/", prefix=True)
        detail = f"{failed[0]!r} changed" if failed else "the apply was abandoned"
        raise Conflict(JOBS, f"jobs changed while the file was being applied ({detail}); "
                       "nothing was written")
    revision = await _write_parts(store, writing, parts)
    await store.delete(f"{APPLYING}{apply_id}/", prefix=True)
    return revision


async def _write_parts(store: Store, marker: bytes, parts: list[list[Op]]) -> int:
    revision = 0
    for n, part in enumerate(parts):
        last = n == len(parts) - 1
        result = await store.txn([Compare.value_is(APPLY, marker)],
                                 [*part, *([Delete(APPLY)] if last else [])])
        if not result.succeeded:
            # Only a leader finishing this apply deletes its marker: it is written.
            return await store.revision()
        revision = result.revision
    return revision


async def finish_apply(store: Store) -> bool:
    """Finish (``writing``) or drop (``checking``) the apply in progress, if any,
    as the leader does for an applier that is gone; returns whether one was there."""
    kv = await store.get(APPLY)
    if kv is None:
        return False
    marker = json.loads(kv.value)
    apply_id = str(marker["id"])
    if marker["state"] == WRITING:
        parts: list[list[Op]] = []
        for n in range(int(marker["chunks"])):
            chunk = await store.get(f"{APPLYING}{apply_id}/{n}")
            if chunk is None:  # the applier is past this part and removed the journal
                return True
            parts.append(list(decode_ops(chunk.value)))
        await _write_parts(store, kv.value, parts)
        log.info("event=apply_finished apply=%s parts=%d", apply_id, len(parts))
    else:
        await store.txn([Compare.value_is(APPLY, kv.value)], [Delete(APPLY)])
        log.info("event=apply_dropped apply=%s reason=%r", apply_id,
                 "its applier stopped before the guards were checked: nothing was written")
    await store.delete(f"{APPLYING}{apply_id}/", prefix=True)
    return True


async def settle_apply(store: Store, seen: bytes | None, *, at_start: bool) -> bytes | None:
    """One look of the leader's at applies: finishes the one in progress when it
    is past its commit point and the term just started (its applier may be the
    deposed leader), or finishes or drops it when it is as it was at the last
    look (``seen``: its applier made no step since); with none in progress,
    removes the journals of applies that never committed, found at the last look
    too. Returns what to pass as ``seen`` next time. Finishing beside a live
    applier is safe: the same writes, each guarded by the marker."""
    kv = await store.get(APPLY)
    if kv is None:
        kvs, _ = await store.range(APPLYING)
        orphans = sorted({kv.key[len(APPLYING):].partition("/")[0] for kv in kvs})
        before = set(json.loads(seen)) if seen is not None and seen.startswith(b"[") else set()
        for apply_id in before & set(orphans):
            # Guarded: an apply that committed since keeps its journal.
            await store.txn([no_apply()], [Delete(f"{APPLYING}{apply_id}/", prefix=True)])
        return json.dumps(orphans).encode() if orphans else None
    if kv.value == seen or (at_start and json.loads(kv.value)["state"] == WRITING):
        await finish_apply(store)
        return None
    return kv.value
