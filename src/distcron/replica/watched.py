"""What the leader's round learns from the store: watched changes (and, at the
start of a term, the state mirror's snapshot) read as typed inputs.

Reading is all this does; what a change means is decided by the round
(:mod:`distcron.scheduler.rounds`). Values that cannot be read are logged and
skipped, except a job's spec: an unreadable spec quarantines its job.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from datetime import datetime

from distcron.jobs import JobSpec
from distcron.replica.mirror import StateMirror
from distcron.scheduler.inputs import (
    Input,
    JobChanged,
    JobRemoved,
    JobUnreadable,
    Reported,
    StoreRestored,
    Triggered,
    WorkersChanged,
)
from distcron.store import WatchBatch
from distcron.store.layout import (
    CURSORS,
    JOBS,
    REPORTS,
    TRIGGERS,
    WORKERS,
    Cursor,
    name_of,
    parse_cursor,
)
from distcron.worker.protocol import Report, WorkerInfo

log = logging.getLogger("distcron.leader")


def job_input(name: str, raw: bytes, cursor: Cursor | None) -> JobChanged | JobUnreadable:
    try:
        return JobChanged(JobSpec.from_json(raw, source=name), cursor)
    except ValueError as exc:
        log.error("event=job_rejected job=%s error=%r", name, str(exc))
        return JobUnreadable(name, str(exc))


def trigger_input(trigger_id: str, raw: bytes) -> Triggered | None:
    try:
        body = json.loads(raw)
        slot = datetime.fromisoformat(body["slot"]) if body.get("slot") else None
        if slot is not None and slot.tzinfo is None:
            raise ValueError("the slot has no offset")
        return Triggered(trigger_id, str(body["job"]), str(body["launch_id"]), slot)
    except (ValueError, KeyError, TypeError):
        log.error("event=trigger_rejected trigger=%s", trigger_id)
        return None


def report_input(run_id: str, raw: bytes) -> Reported | None:
    try:
        report = Report.from_json(raw)
        return Reported(run_id, report.worker, report.run_status())
    except (ValueError, KeyError, TypeError):
        log.error("event=report_rejected run_id=%s", run_id)
        return None


def workers_input(workers: Mapping[str, bytes], reports: Mapping[str, bytes]) -> WorkersChanged:
    registered = {}
    for name, raw in workers.items():
        try:
            registered[name] = WorkerInfo.from_json(raw)
        except ValueError:
            log.error("event=worker_rejected worker=%s", name)
    return WorkersChanged(registered, _reports(reports))


def _reports(reports: Mapping[str, bytes]) -> dict[str, Reported]:
    return {run_id: found for run_id, raw in reports.items()
            if (found := report_input(run_id, raw)) is not None}


def held_reports(reports: Mapping[str, bytes]) -> list[Reported]:
    return list(_reports(reports).values())


def held_triggers(triggers: Mapping[str, bytes]) -> list[Triggered]:
    return [found for trigger_id, raw in triggers.items()
            if (found := trigger_input(trigger_id, raw)) is not None]


def release_marks(marks: Mapping[str, bytes]) -> dict[str, list[str] | None]:
    """The release marks as stored: the launch ids each names (None: unreadable)."""
    found: dict[str, list[str] | None] = {}
    for mark, raw in marks.items():
        try:
            found[mark] = [str(launch_id) for launch_id in json.loads(raw)]
        except (ValueError, TypeError):
            log.error("event=release_mark_unreadable mark=%s", mark)
            found[mark] = None
    return found


def restored_input(raw: bytes, now: datetime) -> StoreRestored:
    """The restore marker; one that cannot be read fails closed: up to now."""
    try:
        at = datetime.fromisoformat(json.loads(raw)["at"])
        if at.tzinfo is None:
            raise ValueError("the instant has no offset")
    except (ValueError, KeyError, TypeError) as exc:
        log.error("event=restore_marker_unreadable error=%r", str(exc))
        at = now
    return StoreRestored(at, raw)


def changes(batch: WatchBatch, mirror: StateMirror) -> Iterable[Input]:
    """The inputs one watched batch holds, in its order; one ``WorkersChanged``
    for the batch, after the rest, when any registration changed."""
    workers_changed = False
    for event in batch.events:
        key, put = event.kv.key, event.type == "put"
        if key.startswith(JOBS):
            name = name_of(key, JOBS)
            if not put:
                yield JobRemoved(name)
                continue
            # The mirror has applied at least this change, and so its cursor.
            raw_cursor = mirror.held(CURSORS).get(name)
            yield job_input(name, event.kv.value,
                            parse_cursor(raw_cursor) if raw_cursor else None)
        elif key.startswith(WORKERS):
            workers_changed = True
        elif put and (key.startswith(TRIGGERS) or key.startswith(REPORTS)):
            found = (trigger_input(name_of(key, TRIGGERS), event.kv.value)
                     if key.startswith(TRIGGERS)
                     else report_input(name_of(key, REPORTS), event.kv.value))
            if found is not None:
                yield found
    if workers_changed:
        yield workers_input(mirror.held(WORKERS), mirror.held(REPORTS))
