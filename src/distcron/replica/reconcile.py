"""Takeover: ask the executors about every launch the previous leader left live.

For each launch in ``launching`` or ``running``, or ``queued`` in its executor
for resources (on this replica's kinds of executor), the new leader asks its
executor what became of it, but only when that executor is the one that holds
the run (the record's ``location``): another machine's "never heard of it"
proves nothing. What it learns goes to the round as
:class:`~distcron.scheduler.inputs.Settled`, where the rules live: a run still
going is adopted and followed to its end, an intent its executor never received
is started now (starting is idempotent by run id), and whatever cannot be learnt
fails closed (``unknown``, or relaunched when the job is idempotent).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping

from distcron.errors import ExecutorError
from distcron.executors.base import Executor, RunStatus
from distcron.scheduler.inputs import Settled
from distcron.scheduler.records import LaunchRecord

log = logging.getLogger("distcron.leader")

_ASKED_TOGETHER = 200


async def settle(records: Iterable[LaunchRecord],
                 executors: Mapping[str, Executor]) -> list[Settled]:
    # Asked a chunk at a time, together, so that an executor that can answer for
    # many at once does (Slurm: one squeue for all their names).
    pending = list(records)
    settled: list[Settled] = []
    for i in range(0, len(pending), _ASKED_TOGETHER):
        settled += await asyncio.gather(*(
            _ask(executors.get(record.executor or "local"), record)
            for record in pending[i:i + _ASKED_TOGETHER]))
    return settled


async def _ask(executor: Executor | None, record: LaunchRecord) -> Settled:
    assert record.run_id is not None
    if (executor is None or record.location is None
            or record.location != executor.location):
        return Settled(record.launch_id, None)
    status: RunStatus | None = None
    output = b""
    try:
        status = await executor.query(record.run_id)
        if status.state.final:
            output = await executor.output(record.run_id)
    except ExecutorError as exc:
        log.warning("event=reconcile_query_failed launch_id=%s error=%r", record.launch_id,
                    str(exc))
    return Settled(record.launch_id, status, output, executor.worker_name)
