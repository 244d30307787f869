"""Keeping history bounded: old launch records, their output, and run directories.

The leader keeps the newest ``keep`` records of each job (and every live one,
and the span its cursor still grows). It prunes a job after every
``PRUNE_EVERY`` records it wrote for it (:mod:`distcron.scheduler.policy`), so
the cost follows the write rate and an idle job costs nothing. Deletes carry
the fence like every leader write; a prune that fails is simply tried again
later.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta

from distcron.replica.commit import fence_guard, txn_limit
from distcron.store import Delete, Op, Store
from distcron.store.layout import (
    LAUNCHES,
    cursor_key,
    launch_key,
    launch_prefix,
    name_of,
    output_key,
)

DEFAULT_HISTORY = 200
# Run directories of ended runs are removed this long after they ended: the
# leader has long since copied their outcome and output into the store.
RUN_DIR_RETENTION = timedelta(hours=1)

log = logging.getLogger("distcron.leader")

_LIVE_STATES = frozenset({"launching", "running", "queued", "retrying"})


async def prune_job_history(store: Store, fence: int, job: str, keep: int) -> int:
    """Delete the job's oldest ended records beyond the newest ``keep``; returns
    how many were deleted."""
    kvs, _ = await store.range(launch_prefix(job))
    if len(kvs) <= keep:
        return 0
    cursor = await store.get(cursor_key(job))
    growing = json.loads(cursor.value).get("gap") if cursor else None
    ended = []
    for kv in kvs:
        launch_id = name_of(kv.key, LAUNCHES)
        state = json.loads(kv.value).get("state")
        if state not in _LIVE_STATES and launch_id != growing:
            ended.append((kv.create_revision, launch_id))
    ended.sort()
    doomed = [launch_id for _, launch_id in ended[: max(0, len(kvs) - keep)]]
    per_txn = txn_limit(store) // 3  # three deletes per record
    for start in range(0, len(doomed), per_txn):
        ops: list[Op] = []
        for launch_id in doomed[start:start + per_txn]:
            # The first attempt's output, and every retry's (``<launch id>~N``).
            ops += [Delete(launch_key(launch_id)), Delete(output_key(launch_id)),
                    Delete(output_key(launch_id + "~"), prefix=True)]
        result = await store.txn([fence_guard(fence)], ops)
        if not result.succeeded:
            return start
    log.info("event=history_pruned job=%s deleted=%d kept=%d", job, len(doomed),
             len(kvs) - len(doomed))
    return len(doomed)
