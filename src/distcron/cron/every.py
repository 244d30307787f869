"""``@every DURATION``: slots at epoch + k * interval.

Counting from the Unix epoch (not from when a replica started) is what makes every
replica agree on the slots (promise 5). Such slots are instants, so daylight saving
never moves them; they are merely shown in the schedule's zone.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from distcron.cron.errors import NoSlotError
from distcron.cron.schedule import Schedule, check_aware, floor_seconds
from distcron.cron.zone import load_zone
from distcron.durations import format_duration

_FIRST = floor_seconds(datetime.min.replace(tzinfo=load_zone("UTC"))) + 86400
_LAST = floor_seconds(datetime.max.replace(tzinfo=load_zone("UTC"))) - 86400


class IntervalSchedule(Schedule):
    __slots__ = ("_zone", "seconds")

    seconds: int
    _zone: ZoneInfo

    def __init__(self, expr: str, tz: str, seconds: int) -> None:
        super().__init__(expr, tz, None)
        object.__setattr__(self, "seconds", seconds)
        object.__setattr__(self, "_zone", load_zone(tz))

    def next(self, after: datetime) -> datetime:
        check_aware(after)
        return self._at((floor_seconds(after) // self.seconds + 1) * self.seconds)

    def prev(self, before: datetime) -> datetime:
        check_aware(before)
        t = floor_seconds(before)
        if before.microsecond == 0:
            t -= 1  # strictly before: a slot at exactly ``before`` does not count
        return self._at(t // self.seconds * self.seconds)

    def next_with_note(self, after: datetime) -> tuple[datetime, str | None]:
        return self.next(after), None

    def describe(self) -> str:
        return (
            f"every {format_duration(self.seconds)}, counted from the Unix epoch "
            f"(1970-01-01 00:00 UTC), {self.tz}"
        )

    def _at(self, t: int) -> datetime:
        if not _FIRST <= t <= _LAST:
            raise NoSlotError(f"{self.expr!r} has no slot within the years 1 to 9999 there")
        return datetime.fromtimestamp(t, self._zone)
