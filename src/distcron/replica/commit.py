"""Committing a decision: the guarded writes that come before anything runs.

Every transaction carries the fence (the leader key still exists and was
created at the fence's revision), and every new launch record the guard "this
key does not exist yet". A decision is written in transactions of at most the
store's ``max_txn_ops`` operations (etcd allows 128 by default), built from
units that never split:

- a job's *accounting*: its cursor with every record that accounts for its
  slots (new records, and the skipped/missed span the cursor still grows), so a
  cursor never moves past a slot without its record, nor a record exist for a
  slot the cursor does not cover (a next leader would decide it again). A unit
  too large for one transaction (a long catch-up) is cut in slot order, each
  part with the cursor at its own last slot;
- any other launch record with what belongs to it: its live index, its output,
  its worker assignment, stop request or clean-up;
- a consumed trigger; a quarantine mark.

On failure: a guard that does not hold raises :class:`CommitRejected` and
nothing of that transaction was written; the caller checks whether it is
still the leader. ``StoreUnavailable`` propagates: the write may or may not
have been applied, and the caller rebuilds its state from the store. The
parts written before a failure are whole units, so what they say is true.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from distcron.errors import CommitRejected
from distcron.notify.delivery import encode
from distcron.scheduler.decision import Decision, WorkerRun
from distcron.scheduler.records import LaunchRecord, LaunchState, launch_id_of
from distcron.store import Compare, Delete, Op, Put, Store
from distcron.store.layout import (
    LEADER,
    RESTORED,
    Cursor,
    active_key,
    assignment_key,
    claim_key,
    cursor_key,
    cursor_value,
    launch_key,
    notify_key,
    output_key,
    quarantine_key,
    released_key,
    report_key,
    trigger_key,
)
from distcron.timefmt import utc_iso
from distcron.worker.protocol import assignment_value, stop_value

# Transactions of a store that sets no limit (SQLite) are still kept to this.
UNBOUNDED_TXN_OPS = 10_000


@dataclass(slots=True)
class _Unit:
    compares: list[Compare] = field(default_factory=list)
    ops: list[Op] = field(default_factory=list)


def fence_guard(fence: int) -> Compare:
    return Compare.created_at(LEADER, fence)


def txn_limit(store: Store) -> int:
    """Operations (and comparisons) one transaction of ``store`` may hold."""
    return store.max_txn_ops or UNBOUNDED_TXN_OPS


def quarantine_value(reason: str, since: datetime) -> bytes:
    return json.dumps({"reason": reason, "since": utc_iso(since)}).encode()


def transactions(decision: Decision, limit: int, now: datetime
                 ) -> list[tuple[list[Compare], list[Op]]]:
    """The decision as transactions (without the fence guard), each within
    ``limit`` comparisons and operations, the fence's included."""
    batches: list[tuple[list[Compare], list[Op]]] = []
    compares: list[Compare] = []
    ops: list[Op] = []
    for unit in _units(decision, limit - 1, now):
        if ops and (len(ops) + len(unit.ops) > limit
                    or len(compares) + len(unit.compares) + 1 > limit):
            batches.append((compares, ops))
            compares, ops = [], []
        compares += unit.compares
        ops += unit.ops
    if ops:
        batches.append((compares, ops))
    return batches


async def commit(store: Store, fence: int, decision: Decision, now: datetime) -> int:
    """Write the decision, guarded by ``fence``; returns the last revision written."""
    revision = 0
    for compares, ops in transactions(decision, txn_limit(store), now):
        result = await store.txn([fence_guard(fence), *compares], ops)
        if not result.succeeded:
            raise CommitRejected(f"guarded write of {len(ops)} operations rejected "
                                 f"(fence {fence})")
        revision = result.revision
    return revision


def _units(decision: Decision, room: int, now: datetime) -> Iterable[_Unit]:
    extras = _extras(decision)
    accounting: dict[str, list[LaunchRecord]] = defaultdict(list)
    for record in decision.records.values():
        if record.launch_id in decision.created or record.state in _SPANS:
            accounting[record.job].append(record)
        else:
            unit = _Unit()
            _add_record(unit, record, decision, extras)
            yield unit
    for job in sorted(accounting.keys() | decision.cursors.keys()):
        yield from _accounting(job, accounting.get(job, []), decision, extras, room)
    for ops in extras.values():  # writes whose launch has no record in the decision
        if ops:
            yield _Unit(ops=ops)
    for trigger_id in decision.consumed_triggers:
        yield _Unit(ops=[Delete(trigger_key(trigger_id))])
    for job, reason in decision.quarantined.items():
        key = quarantine_key(job)
        yield _Unit(ops=[Delete(key) if reason is None else Put(key, quarantine_value(reason,
                                                                                      now))])
    for mark, launch_ids in decision.release_marks.items():
        yield _Unit(ops=[Put(released_key(mark), json.dumps(launch_ids).encode())])
    for mark in decision.release_cleanups:
        yield _Unit(ops=[Delete(released_key(mark))])
    if decision.restore_marker is not None:
        # Last: a leader that dies before this finds the marker again, and
        # accounting for slots already accounted for changes nothing.
        yield _Unit([Compare.value_is(RESTORED, decision.restore_marker)], [Delete(RESTORED)])


_SPANS = (LaunchState.SKIPPED, LaunchState.MISSED)


def _slot_order(record: LaunchRecord) -> float:
    """Records in the order of the slots they account for; manual runs first."""
    end = record.until or record.slot
    return float("-inf") if end is None else end.timestamp()


def _accounting(job: str, records: list[LaunchRecord], decision: Decision,
                extras: dict[str, list[Op]], room: int) -> Iterable[_Unit]:
    """The job's cursor with the records that account for its slots; in parts
    of at most ``room`` operations, each part with the cursor at its last slot."""
    records.sort(key=_slot_order)
    unit = _Unit()
    last: LaunchRecord | None = None
    for record in records:
        part = _Unit()
        _add_record(part, record, decision, extras)
        if last is not None and unit.ops and len(unit.ops) + len(part.ops) + 1 > room:
            unit.ops.append(Put(cursor_key(job), cursor_value(_cursor_at(last))))
            yield unit
            unit = _Unit()
        unit.compares += part.compares
        unit.ops += part.ops
        if record.slot is not None:
            last = record
    cursor = decision.cursors.get(job)
    if cursor is not None:
        unit.ops.append(Put(cursor_key(job), cursor_value(cursor)))
    if unit.ops:
        yield unit


def _cursor_at(record: LaunchRecord) -> Cursor:
    """The cursor just after ``record``'s slots."""
    assert record.slot is not None
    span = record.state in _SPANS
    return Cursor(record.until or record.slot, record.launch_id if span else None)


def _add_record(unit: _Unit, record: LaunchRecord, decision: Decision,
                extras: dict[str, list[Op]]) -> None:
    launch_id = record.launch_id
    key = launch_key(launch_id)
    created = launch_id in decision.created
    if created:
        unit.compares.append(Compare.missing(key))
    unit.ops.append(Put(key, record.to_json()))
    if record.state.live:
        unit.ops.append(Put(active_key(launch_id), b""))
    elif not created:
        unit.ops.append(Delete(active_key(launch_id)))
    unit.ops += extras.pop(launch_id, [])


def _extras(decision: Decision) -> dict[str, list[Op]]:
    """The writes that go with each launch's record, by launch id."""
    extras: dict[str, list[Op]] = defaultdict(list)
    for run_id, output in decision.outputs.items():
        extras[launch_id_of(run_id)].append(Put(output_key(run_id), output))
    for start in decision.assignments:
        record = start.record
        assert record.worker is not None and record.run_id is not None
        # Keyed by the attempt: a retry is a new run for the worker, never the old one again.
        extras[record.launch_id].append(Put(assignment_key(record.worker, record.run_id),
                                            assignment_value(start.request, start.release_by)))
    for run in decision.stop_requests:
        extras[run.launch_id].append(Put(assignment_key(run.worker, run.run_id),
                                         stop_value(run.run_id)))
    for run in decision.cleanups:
        extras[run.launch_id] += cleanup_ops(run)
    for note in decision.notifications:
        extras[note.launch_id].append(Put(notify_key(note.launch_id, note.state), encode(
            note.body, note.notifiers, set(), note.with_output)))
    return extras


def cleanup_ops(run: WorkerRun) -> list[Op]:
    """What is left of an assigned run once its outcome is recorded."""
    return [Delete(assignment_key(run.worker, run.run_id)), Delete(claim_key(run.run_id)),
            Delete(report_key(run.run_id))]
