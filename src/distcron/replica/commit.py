"""Committing a plan: the guarded writes that come before anything runs.

Every transaction carries the fence (the leader key still exists and was
created at the fence's revision), and every new launch record the guard "this
key does not exist yet". A plan too large for one transaction (etcd allows
128 operations by default) is split between jobs, never inside one: a job's
records and its cursor always commit together.

On failure: a guard that does not hold raises :class:`CommitRejected` and
nothing of that transaction was written; the caller checks whether it is
still the leader. ``StoreUnavailable`` propagates: the write may or may not
have been applied, and the caller rebuilds its state from the store.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

from distcron.errors import CommitRejected
from distcron.scheduler.plan import Plan
from distcron.scheduler.records import LaunchRecord
from distcron.store import Compare, Delete, Op, Put, Store
from distcron.store.layout import (
    LEADER,
    active_key,
    cursor_key,
    cursor_value,
    launch_key,
    trigger_key,
)

MAX_TXN_OPS = 120


def fence_guard(fence: int) -> Compare:
    return Compare.created_at(LEADER, fence)



def _job_ops(plan: Plan, job: str, records: list[LaunchRecord],
             extra: Mapping[str, Sequence[Op]]) -> tuple[list[Compare], list[Op]]:
    compares: list[Compare] = []
    ops: list[Op] = []
    for record in records:
        launch_id = record.launch_id
        key = launch_key(launch_id)
        if launch_id in plan.created:
            compares.append(Compare.missing(key))
        ops.append(Put(key, record.to_json()))
        if record.state.live:
            ops.append(Put(active_key(launch_id), b""))
        elif launch_id not in plan.created:
            ops.append(Delete(active_key(launch_id)))
        ops.extend(extra.get(launch_id, ()))
    if job in plan.cursors:
        ops.append(Put(cursor_key(job), cursor_value(plan.cursors[job])))
    return compares, ops


def transactions(plan: Plan, extra: Mapping[str, Sequence[Op]] | None = None
                 ) -> list[tuple[list[Compare], list[Op]]]:
    """The plan as guarded transactions (without the fence), each within the
    operation limit except where one job alone exceeds it. ``extra`` holds more
    operations by launch id (its output, its assignment to a worker), written
    with the launch's record."""
    extra = extra or {}
    by_job: dict[str, list[LaunchRecord]] = defaultdict(list)
    for record in plan.records.values():
        by_job[record.job].append(record)
    batches: list[tuple[list[Compare], list[Op]]] = []
    compares: list[Compare] = []
    ops: list[Op] = [Delete(trigger_key(t)) for t in plan.consumed_triggers]
    for job in sorted(plan.jobs()):
        job_compares, job_ops = _job_ops(plan, job, by_job[job], extra)
        if ops and len(ops) + len(job_ops) > MAX_TXN_OPS:
            batches.append((compares, ops))
            compares, ops = [], []
        compares += job_compares
        ops += job_ops
    if ops:
        batches.append((compares, ops))
    return batches


async def commit(store: Store, fence: int, plan: Plan,
                 extra: Mapping[str, Sequence[Op]] | None = None) -> int:
    """Write the plan, guarded by ``fence``; returns the last revision written."""
    revision = 0
    for compares, ops in transactions(plan, extra):
        result = await store.txn([fence_guard(fence), *compares], ops)
        if not result.succeeded:
            raise CommitRejected(f"guarded write of {len(ops)} operations rejected "
                                 f"(fence {fence})")
        revision = result.revision
    return revision
