"""What every schedule offers: the contract others code against.

Datetimes are timezone-aware in and out; results are in the schedule's zone, with
the right ``fold``. Schedules are immutable and hashable, equal when built from the
same (expression, zone, job seed where it matters).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from distcron.cron.days import EPOCH_ORDINAL
from distcron.cron.errors import NoSlotError
from distcron.cron.zone import load_zone

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Schedule(ABC):
    """A compiled schedule. Build one with ``distcron.cron.parse``."""

    __slots__ = ("expr", "job", "tz")

    expr: str
    tz: str
    job: str | None  # the job name seeding ?/H fields, None when nothing is spread

    def __init__(self, expr: str, tz: str, job: str | None) -> None:
        object.__setattr__(self, "expr", expr)
        object.__setattr__(self, "tz", tz)
        object.__setattr__(self, "job", job)

    @property
    def zone(self) -> ZoneInfo:
        """The schedule's zone as a tzinfo."""
        return load_zone(self.tz)

    @abstractmethod
    def next(self, after: datetime) -> datetime:
        """The first slot strictly after ``after``."""

    @abstractmethod
    def prev(self, before: datetime) -> datetime:
        """The last slot strictly before ``before``."""

    @abstractmethod
    def next_with_note(self, after: datetime) -> tuple[datetime, str | None]:
        """``next(after)`` and, when daylight saving changed how it runs, a note
        saying how (e.g. "shifted: 02:30 does not exist on 2026-03-29")."""

    @abstractmethod
    def describe(self) -> str:
        """One line of English saying when the schedule fires."""

    def iter(self, after: datetime) -> Iterator[datetime]:
        """Successive slots after ``after``, lazily; ends at the year 9999."""
        current = after
        while True:
            try:
                current = self.next(current)
            except NoSlotError:
                return
            yield current

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Schedule):
            return NotImplemented
        return type(self) is type(other) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def _key(self) -> tuple[str, str, str | None]:
        return (self.expr, self.tz, self.job)

    def __repr__(self) -> str:
        job = f", job={self.job!r}" if self.job is not None else ""
        return f"parse({self.expr!r}, tz={self.tz!r}{job})"


def check_aware(value: datetime) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(
            f"naive datetime {value.isoformat()}: pass a timezone-aware datetime "
            "(e.g. datetime.now(UTC))"
        )


def in_zone(value: datetime, zone: ZoneInfo) -> datetime:
    """``value`` converted to ``zone``; ValueError when it is naive."""
    check_aware(value)
    try:
        return value.astimezone(zone)
    except OverflowError:
        raise NoSlotError(f"{value.isoformat()} is outside the years 1 to 9999 in {zone}") from None


def floor_seconds(value: datetime) -> int:
    """Whole epoch seconds at or before the aware ``value`` (exact, no float)."""
    delta = value - _EPOCH
    return delta.days * 86400 + delta.seconds


def wall_datetime(wall: int, fold: int, zone: ZoneInfo) -> datetime:
    """The aware datetime for wall seconds ``wall`` in ``zone``."""
    epoch_day, sod = divmod(wall, 86400)
    day = date.fromordinal(epoch_day + EPOCH_ORDINAL)
    return datetime(
        day.year, day.month, day.day, sod // 3600, sod // 60 % 60, sod % 60, tzinfo=zone, fold=fold
    )
