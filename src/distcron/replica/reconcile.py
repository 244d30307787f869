"""Takeover: settle every launch the previous leader left live.

For each launch in ``launching`` or ``running`` the new leader asks its
executor what became of it, but only when that executor is the one that holds
the run (the record's ``location``): another machine's "never heard of it"
proves nothing. What is learnt is recorded; a run still going is adopted and
followed to its end; an intent whose executor never received it is started
now (starting is idempotent by run id). Whatever cannot be learnt fails
closed: ``unknown``, unless the job is idempotent, in which case it is launched
again as its next attempt under the same launch id.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime

from distcron.errors import ExecutorError
from distcron.executors.base import Executor, RunState, RunStatus
from distcron.scheduler.core import SchedulerCore, merge
from distcron.scheduler.plan import Plan
from distcron.scheduler.records import LaunchRecord, LaunchState

log = logging.getLogger("distcron.leader")

Follow = Callable[[Executor, str, RunStatus], Awaitable[None]]


async def reconcile(core: SchedulerCore, executors: Mapping[str, Executor], follow: Follow,
                    now: datetime) -> Plan:
    plans = []
    for record in list(core.live_records()):
        # Launches on worker agents are settled by the workers' reports and
        # registrations instead (see distcron.replica.agents).
        if (record.state in (LaunchState.LAUNCHING, LaunchState.RUNNING)
                and record.executor != "agent"):
            executor = executors.get(record.executor or "local")
            plans.append(await _settle(core, executor, follow, record, now))
    return merge(plans)


async def _settle(core: SchedulerCore, executor: Executor | None, follow: Follow,
                  record: LaunchRecord, now: datetime) -> Plan:
    assert record.run_id is not None
    status = None
    if (executor is not None and record.location is not None
            and record.location == executor.location):
        try:
            status = await executor.query(record.run_id)
        except ExecutorError as exc:
            log.warning("event=reconcile_query_failed launch_id=%s error=%r",
                        record.launch_id, str(exc))
    if status is not None and status.state is RunState.NOT_FOUND:
        if record.state is LaunchState.LAUNCHING:
            log.info("event=reconcile_start launch_id=%s", record.launch_id)
            plan = Plan()
            plan.starts.append(record)
            return plan
        status = None
    if status is not None and status.state is not RunState.LOST:
        log.info("event=reconcile_adopt launch_id=%s state=%s", record.launch_id,
                 status.state.value)
        assert executor is not None
        await follow(executor, record.launch_id, status)
        return Plan()
    spec = core.job(record.job)
    reason = "takeover could not learn the run's fate"
    if status is not None and status.reason:
        reason += f" ({status.reason})"
    if spec is not None and spec.idempotent:
        log.warning("event=reconcile_relaunch launch_id=%s", record.launch_id)
        return core.relaunch(record.launch_id, now, reason + "; relaunched: idempotent job")
    log.warning("event=reconcile_unknown launch_id=%s", record.launch_id)
    return core.run_ended(record.launch_id, LaunchState.UNKNOWN, now, reason=reason)
