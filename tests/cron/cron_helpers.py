"""Helpers shared by the cron engine's tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import cache
from itertools import islice
from zoneinfo import ZoneInfo

from distcron.cron import parse


def at(
    zone: str,
    year: int,
    month: int,
    day: int,
    hour: int = 0,
    minute: int = 0,
    second: int = 0,
    fold: int = 0,
) -> datetime:
    """An aware datetime in ``zone``: at("UTC", 2026, 1, 2, 3, 4)."""
    return datetime(year, month, day, hour, minute, second, tzinfo=ZoneInfo(zone), fold=fold)


def slots(
    expr: str, after: datetime, count: int, tz: str = "UTC", job: str | None = None
) -> list[str]:
    """The next ``count`` slots as ISO strings with offsets."""
    schedule = parse(expr, tz, job)
    return [s.isoformat() for s in islice(schedule.iter(after), count)]


@cache
def changes(zone: str) -> tuple[datetime, ...]:
    """UTC instants (to the minute) where the zone's offset changed in 2024–2027,
    found by probing zoneinfo hour by hour (no code shared with the engine)."""
    tz = ZoneInfo(zone)
    minute = timedelta(minutes=1)
    found = []
    t = datetime(2024, 1, 1, tzinfo=UTC)
    while t.year < 2028:
        nxt = t + timedelta(hours=1)
        if t.astimezone(tz).utcoffset() != nxt.astimezone(tz).utcoffset():
            m = t
            while m.astimezone(tz).utcoffset() == t.astimezone(tz).utcoffset():
                m += minute
            found.append(m)
        t = nxt
    return tuple(found)
