"""The herd: how many launches every minute of the next 24 hours holds, all jobs together,
and which jobs make the hottest minutes (the thundering herd that ``H`` spreads out).

Bounded for thousands of jobs: each job is counted slot by slot up to
:data:`PER_JOB_CAP` slots (one every 5 minutes on average); a denser job is a
steady load, shown beside the chart with its rate rather than counted minute
by minute (it adds about the same to every minute: it makes no herd); and the
whole count stops at :data:`TOTAL_CAP` slots, saying so. The
hottest minutes are then named job by job with one ``next`` per job and minute.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from distcron.cron import Schedule
from distcron.errors import DistcronError

WINDOW = timedelta(hours=24)
MINUTES = 24 * 60
PER_JOB_CAP = MINUTES // 5
TOTAL_CAP = 300_000
HOTTEST = 10
NAMED_PER_MINUTE = 12
_EPSILON = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class Steady:
    """A job denser than :data:`PER_JOB_CAP` slots a day."""

    job: str
    per_minute: float


@dataclass(frozen=True, slots=True)
class HotMinute:
    start: datetime
    launches: int
    jobs: tuple[tuple[str, int], ...]  # the busiest first, at most NAMED_PER_MINUTE
    more_jobs: int  # jobs in the minute beyond those named


@dataclass(frozen=True, slots=True)
class Herd:
    start: datetime  # the first whole minute counted, in UTC
    per_minute: tuple[int, ...]  # MINUTES counts
    hottest: tuple[HotMinute, ...]
    steady: tuple[Steady, ...]
    counted_jobs: int
    uncounted_jobs: int  # left out once TOTAL_CAP was reached

    @property
    def peak(self) -> int:
        return max(self.per_minute, default=0)

    @property
    def total(self) -> int:
        return sum(self.per_minute)


def compute(schedules: list[tuple[str, Schedule]], now: datetime) -> Herd:
    """The herd of the minutes from the one after ``now`` on (pure: CPU only)."""
    start = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    end = start + WINDOW
    counts = [0] * MINUTES
    steady: list[Steady] = []
    counted: list[tuple[str, Schedule]] = []
    budget = TOTAL_CAP
    uncounted = 0
    for position, (job, schedule) in enumerate(schedules):
        cap = min(PER_JOB_CAP, budget)
        slots, complete = _slots(schedule, start, end, cap)
        if not complete and cap < PER_JOB_CAP:  # the bound, not the job, is reached
            uncounted = len(schedules) - position
            break
        if not complete:  # denser than the cap: a steady load
            span = max((slots[-1] - slots[0]).total_seconds() / 60, 1 / 60)
            steady.append(Steady(job, (len(slots) - 1) / span))  # n slots, n - 1 gaps
            continue
        budget -= len(slots)
        for slot in slots:
            counts[int((slot - start).total_seconds()) // 60] += 1
        counted.append((job, schedule))
    hottest = sorted(range(MINUTES), key=lambda m: (-counts[m], m))[:HOTTEST]
    return Herd(
        start=start,
        per_minute=tuple(counts),
        hottest=tuple(_name(counted, start + timedelta(minutes=m), counts[m])
                      for m in hottest if counts[m]),
        steady=tuple(sorted(steady, key=lambda s: -s.per_minute)),
        counted_jobs=len(counted),
        uncounted_jobs=uncounted,
    )


def _slots(schedule: Schedule, start: datetime, end: datetime,
           cap: int) -> tuple[list[datetime], bool]:
    """The slots in [start, end), and whether that is all of them (False: past ``cap``)."""
    found: list[datetime] = []
    try:
        for slot in schedule.iter(start - _EPSILON):
            if slot >= end:
                break
            if len(found) == cap:
                return found, False
            found.append(slot)
    except DistcronError:
        pass  # a schedule the engine cannot follow any further has no more slots
    return found, True


def _name(counted: list[tuple[str, Schedule]], minute: datetime, launches: int) -> HotMinute:
    end = minute + timedelta(minutes=1)
    jobs: list[tuple[str, int]] = []
    for job, schedule in counted:
        n = 0
        try:
            for slot in schedule.iter(minute - _EPSILON):
                if slot >= end:
                    break
                n += 1
        except DistcronError:
            pass
        if n:
            jobs.append((job, n))
    jobs.sort(key=lambda item: (-item[1], item[0]))
    return HotMinute(start=minute, launches=launches, jobs=tuple(jobs[:NAMED_PER_MINUTE]),
                     more_jobs=max(0, len(jobs) - NAMED_PER_MINUTE))
