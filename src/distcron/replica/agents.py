"""The leader's side of the worker protocol (see :mod:`distcron.worker.protocol`).

The leader never talks to a worker: it writes assignments beside launch
intents, reads the workers' registrations and reports, and cleans up after
recording an outcome. What a report or a vanished registration means for a
launch is decided by the scheduler core; this module translates.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime

from distcron.executors.base import LaunchRequest, RunState
from distcron.replica.outcomes import OUTCOMES
from distcron.scheduler.core import SchedulerCore
from distcron.scheduler.plan import Plan
from distcron.scheduler.records import LaunchRecord, LaunchState
from distcron.store import Delete, KeyValue, Op, Put, Store
from distcron.store.layout import (
    REPORTS,
    WORKERS,
    assignment_key,
    claim_key,
    name_of,
    report_key,
)
from distcron.worker.protocol import Report, WorkerInfo

log = logging.getLogger("distcron.leader")


def assignment_op(record: LaunchRecord, request: LaunchRequest) -> Put:
    assert record.worker is not None
    return Put(assignment_key(record.worker, record.launch_id),
               json.dumps(request.to_dict()).encode())


def cleanup_ops(launch_id: str, worker: str) -> list[Op]:
    """What is left of an assigned launch once its outcome is recorded."""
    return [Delete(assignment_key(worker, launch_id)), Delete(claim_key(launch_id)),
            Delete(report_key(launch_id))]


def parse_worker(kv: KeyValue) -> WorkerInfo | None:
    try:
        return WorkerInfo.from_json(kv.value)
    except ValueError:
        log.error("event=worker_rejected key=%s", kv.key)
        return None


async def read_workers(store: Store) -> dict[str, WorkerInfo]:
    kvs, _ = await store.range(WORKERS)
    workers = {name_of(kv.key, WORKERS): parse_worker(kv) for kv in kvs}
    return {name: info for name, info in workers.items() if info is not None}


async def read_reports(store: Store) -> dict[str, Report]:
    kvs, _ = await store.range(REPORTS)
    reports = {}
    for kv in kvs:
        try:
            reports[name_of(kv.key, REPORTS)] = Report.from_json(kv.value)
        except ValueError:
            log.error("event=report_rejected key=%s", kv.key)
    return reports


def apply_report(core: SchedulerCore, launch_id: str, report: Report, now: datetime,
                 extra: dict[str, list[Op]]) -> Plan:
    """A worker said a launch started or ended; an end also cleans up its keys."""
    status = report.run_status()
    if status.state is RunState.RUNNING:
        return core.run_started(launch_id, status.started_at or now, pid=status.pid,
                                worker=report.worker)
    if not status.state.final:
        return Plan()
    extra.setdefault(launch_id, []).extend(cleanup_ops(launch_id, report.worker))
    log.info("event=run_reported launch_id=%s worker=%s state=%s exit_code=%s", launch_id,
             report.worker, status.state.value, status.exit_code)
    return core.run_ended(launch_id, OUTCOMES.get(status.state, LaunchState.UNKNOWN), now,
                          exit_code=status.exit_code, signal=status.signal,
                          started_at=status.started_at, ended_at=status.ended_at,
                          reason=status.reason)


def lost_cleanup(plan: Plan, extra: dict[str, list[Op]]) -> None:
    """Clean up after launches the plan records lost with their worker."""
    for record in plan.records.values():
        if record.state is LaunchState.LOST and record.worker is not None:
            extra.setdefault(record.launch_id, []).extend(
                cleanup_ops(record.launch_id, record.worker))
