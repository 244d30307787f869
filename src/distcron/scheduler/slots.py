"""Each slot's fate before the overlap policy: the rules that need only the job,
the slot and ``now``, and the spans that record consecutive skipped or missed
slots as one record."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from distcron.scheduler.ledger import Job, Ledger
from distcron.scheduler.plan import Plan
from distcron.scheduler.policy import (
    MAX_BACKLOG_SLOTS,
    ON_TIME_TOLERANCE,
    PAUSED_ACCOUNTING_INTERVAL,
    starting_deadline,
)
from distcron.scheduler.records import Cause, LaunchState, launch_id_for

REASONS = {
    Cause.PAUSED: "the job is paused",
    Cause.DEADLINE: "past its starting deadline",
    Cause.NO_CATCHUP: "fell due while no leader ran (catch-up none)",
    Cause.SUPERSEDED: "a later slot runs instead (catch-up last)",
    Cause.RESTORED: "fell due before the store was restored from an older copy: it may "
                    "have run, so it is not run again",
}


def due_slots(job: Job, until: datetime) -> list[datetime]:
    """The job's slots in (cursor, until], in UTC; at most MAX_BACKLOG_SLOTS + 1."""
    slots = []
    for slot in itertools.islice(job.schedule.iter(job.cursor), MAX_BACKLOG_SLOTS + 1):
        if slot > until:
            break
        slots.append(slot.astimezone(UTC))
    return slots


def latest_before(job: Job, until: datetime) -> tuple[datetime, datetime]:
    """The job's last slot at or before ``until``, and the one before it."""
    last = job.schedule.prev(until + timedelta(microseconds=1)).astimezone(UTC)
    return last, job.schedule.prev(last).astimezone(UTC)


def fate(job: Job, slot: datetime, latest: bool, now: datetime) -> tuple[LaunchState, Cause] | None:
    """Whether a due slot is skipped or missed whatever else runs (and why), or
    ``None``: it goes to the overlap policy."""
    spec = job.spec
    lag = now - slot
    deadline = starting_deadline(spec)
    if spec.paused:
        return LaunchState.SKIPPED, Cause.PAUSED
    if deadline is not None and lag > deadline:
        return LaunchState.MISSED, Cause.DEADLINE
    if lag > ON_TIME_TOLERANCE and spec.catchup == "none":
        return LaunchState.MISSED, Cause.NO_CATCHUP
    if spec.catchup == "last" and not latest and (
            lag > ON_TIME_TOLERANCE or spec.concurrency != "allow"):
        # Several slots due at once: the latest runs, not the oldest, which would
        # make it overlap. (Slots still on time all run when overlap is allowed:
        # a failover delays them, it does not lose them.)
        return LaunchState.MISSED, Cause.SUPERSEDED
    return None


def next_wake(job: Job, now: datetime) -> datetime:
    """The job's next slot, or for a paused job at most once every
    PAUSED_ACCOUNTING_INTERVAL, to grow its "paused" span."""
    upcoming = job.schedule.next(job.cursor)
    if job.spec.paused:
        return max(upcoming, now + PAUSED_ACCOUNTING_INTERVAL)
    return upcoming


def record_gap(ledger: Ledger, job: Job, slot: datetime, state: LaunchState, cause: Cause,
               reason: str, now: datetime, plan: Plan, *, span_to: datetime | None = None,
               count: int = 1) -> None:
    """Record ``slot`` (up to ``span_to``) as skipped or missed, growing the
    job's current span when it covers the slot just before."""
    gap = job.gap
    until = span_to or slot
    if (gap is not None and gap.state is state and gap.reason == reason
            and (gap.until or gap.slot) == job.cursor):
        grown = gap.model_copy(update={"until": until, "count": gap.count + count,
                                       "ended_at": now})
        plan.write(grown)
    else:
        grown = ledger.new_record(job, slot, launch_id_for(job.spec.name, slot), state, now,
                                  cause=cause, reason=reason)
        grown = grown.model_copy(update={
            "until": until if until != slot else None, "count": count, "ended_at": now})
        plan.write(grown, create=True)
    job.gap = grown
    job.cursor = until
