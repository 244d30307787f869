"""The leader's side of the worker protocol (see :mod:`distcron.worker.protocol`).

The leader never talks to a worker: it writes assignments beside launch
intents, rewrites an assignment as a stop request beside the record of the
decision to stop it, reads the workers' registrations and reports, and cleans
up after recording an outcome. What a report or a vanished registration means
for a launch is decided by the scheduler core; this module translates.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import datetime

from distcron.executors.base import LaunchRequest, RunState
from distcron.replica.outcomes import OUTCOMES
from distcron.scheduler.core import SchedulerCore
from distcron.scheduler.plan import Plan
from distcron.scheduler.records import LaunchRecord, LaunchState, launch_id_of
from distcron.store import Delete, Op, Put
from distcron.store.layout import assignment_key, claim_key, report_key
from distcron.worker.protocol import Report, WorkerInfo, stop_value

log = logging.getLogger("distcron.leader")


def assignment_op(record: LaunchRecord, request: LaunchRequest) -> Put:
    # Keyed by the attempt: a retry is a new run for the worker, never the old one again.
    assert record.worker is not None and record.run_id is not None
    return Put(assignment_key(record.worker, record.run_id),
               json.dumps(request.to_dict()).encode())


def stop_op(record: LaunchRecord) -> Put:
    """The assignment of a run on a worker, rewritten as a request to stop it."""
    assert record.worker is not None and record.run_id is not None
    return Put(assignment_key(record.worker, record.run_id), stop_value(record.run_id))


def worker_ops(plan: Plan, extra: dict[str, list[Op]],
               request_for: Callable[[LaunchRecord], LaunchRequest]) -> None:
    """The plan's writes for worker agents, each committed with its launch's
    record: the assignment of every launch the plan starts on a worker, and a
    stop request for every run it stops on one (the core writes the record of
    each run it stops, so the request commits with the decision or not at all).

    A launch the plan both starts and stops (two slots of a ``replace`` job
    decided at once) gets the stop alone: a worker never starts it, and one
    transaction may not write its key twice. A run the plan also records as
    ended gets none: its clean-up deletes the assignment, which a stop would
    bring back as litter.
    """
    stopped = set()
    for record in plan.stops:
        current = plan.records.get(record.launch_id)
        if record.executor != "agent" or current is None or current.worker is None:
            continue
        stopped.add(record.launch_id)
        if current.state.live:
            extra.setdefault(record.launch_id, []).append(stop_op(current))
    for record in plan.starts:
        if record.executor == "agent" and record.launch_id not in stopped:
            extra.setdefault(record.launch_id, []).append(
                assignment_op(record, request_for(record)))


def cleanup_ops(run_id: str, worker: str) -> list[Op]:
    """What is left of an assigned run once its outcome is recorded."""
    return [Delete(assignment_key(worker, run_id)), Delete(claim_key(run_id)),
            Delete(report_key(run_id))]


def parse_worker(name: str, value: bytes) -> WorkerInfo | None:
    try:
        return WorkerInfo.from_json(value)
    except ValueError:
        log.error("event=worker_rejected worker=%s", name)
        return None


def parse_report(run_id: str, value: bytes) -> Report | None:
    try:
        return Report.from_json(value)
    except ValueError:
        log.error("event=report_rejected run_id=%s", run_id)
        return None


def apply_report(core: SchedulerCore, run_id: str, report: Report, now: datetime,
                 extra: dict[str, list[Op]]) -> Plan:
    """A worker said a run started or ended; an end also cleans up its keys.
    A report of another attempt than the launch's current one changes nothing."""
    launch_id = launch_id_of(run_id)
    record = core.live_record(launch_id)
    if record is None or record.run_id != run_id:
        return Plan()
    status = report.run_status()
    if status.state is RunState.RUNNING:
        return core.run_started(launch_id, status.started_at or now, pid=status.pid,
                                worker=report.worker)
    if not status.state.final:
        return Plan()
    extra.setdefault(launch_id, []).extend(cleanup_ops(run_id, report.worker))
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
                cleanup_ops(record.run_id or record.launch_id, record.worker))
