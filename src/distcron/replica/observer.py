"""What a committed decision says to people: a log line per record written, and
the metrics of launches, spans, unknown and lost runs."""

from __future__ import annotations

import logging
from datetime import datetime

from distcron.metrics import Metrics
from distcron.scheduler.decision import Decision, Note
from distcron.scheduler.records import Cause, LaunchKind, LaunchRecord, LaunchState

log = logging.getLogger("distcron.leader")


def log_notes(decision: Decision) -> None:
    for note in decision.notes:
        _log_note(note)


def _log_note(note: Note) -> None:
    text = " ".join(f"{key}={value}" for key, value in note.fields)
    log.log(logging.WARNING if note.warning else logging.INFO, "event=%s %s", note.event,
            text)


class DecisionObserver:
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        # Per job, the span last counted and how many slots it had then: a span
        # grows in place, so only the slots it gained are counted.
        self._gap_counts: dict[str, tuple[str, int]] = {}
        # Per job, its launches pending in a batch scheduler (Slurm).
        self._waiting: dict[str, set[str]] = {}

    def committed(self, decision: Decision, committed_at: datetime) -> None:
        for record in decision.records.values():
            self._log_record(record, record.launch_id in decision.created)
            self._count(record)
        for start in (*decision.starts, *decision.assignments, *decision.releases):
            record = start.record
            # A backfilled slot is late on purpose: it is no launch lag.
            if (record.slot is not None and record.attempt == 1
                    and record.kind is not LaunchKind.BACKFILL):
                self.metrics.launch_lag.observe((committed_at - record.slot).total_seconds())
        for job, reason in decision.quarantined.items():
            if reason is None:
                log.info("event=job_released job=%s", job)
            else:
                log.error("event=job_quarantined job=%s reason=%r", job, reason)

    def _count(self, record: LaunchRecord) -> None:
        metrics = self.metrics
        waiting = self._waiting.get(record.job)
        if record.waiting_for_resources:
            waiting = self._waiting.setdefault(record.job, set())
            waiting.add(record.launch_id)
        elif waiting is not None and record.launch_id in waiting:
            waiting.discard(record.launch_id)
        else:
            waiting = None
        if waiting is not None:
            metrics.launches_waiting_for_resources.labels(job=record.job).set(len(waiting))
        if record.state in (LaunchState.SKIPPED, LaunchState.MISSED):
            known_id, known = self._gap_counts.get(record.job, ("", 0))
            added = record.count - (known if known_id == record.launch_id else 0)
            self._gap_counts[record.job] = (record.launch_id, record.count)
            if record.state is LaunchState.SKIPPED:
                reason = "paused" if record.cause is Cause.PAUSED else "overlap"
                metrics.slots_skipped.labels(job=record.job, reason=reason).inc(added)
            else:
                metrics.slots_missed.labels(job=record.job).inc(added)
        elif record.state is LaunchState.UNKNOWN:
            metrics.launches_unknown.labels(job=record.job).inc()
        elif record.state is LaunchState.LOST:
            metrics.launches_lost.labels(job=record.job).inc()
        if not record.state.live and record.launched:
            metrics.launches.labels(job=record.job, outcome=record.state.value).inc()
            if record.started_at and record.ended_at:
                metrics.run_duration.labels(job=record.job).observe(
                    (record.ended_at - record.started_at).total_seconds())

    @staticmethod
    def _log_record(record: LaunchRecord, created: bool) -> None:
        log.info("event=%s launch_id=%s state=%s attempt=%d%s%s",
                 "launch_recorded" if created else "launch_updated", record.launch_id,
                 record.state.value, record.attempt,
                 f" count={record.count}" if record.count > 1 else "",
                 f" reason={record.reason!r}" if record.reason else "")
