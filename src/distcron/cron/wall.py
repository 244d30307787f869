"""The search on the wall clock: the next/previous matching local time, zone-free.

A wall time is (year, month, day, second of the day). Times of day are a bitmask of
the 1,440 minutes of the day plus a sorted tuple of seconds; days come from the
DayRule's month masks. Each step jumps straight to the next set bit, so even
``0 0 29 2 *`` costs a few month lookups per leap year, not a walk through days.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from datetime import date

from distcron.cron.days import EPOCH_ORDINAL, EVERY_DAY, MAX_YEAR, MIN_YEAR, DayRule, month_info
from distcron.cron.errors import NoSlotError

DAY = 86400
Wall = tuple[int, int, int, int]  # year, month, day, second of the day


class WallPattern:
    """Times of day and days of one schedule. Interned by value: many schedules share one."""

    __slots__ = (
        "days",
        "every_day",
        "first_month",
        "first_tod",
        "last_month",
        "last_tod",
        "months",
        "secs",
        "tod",
    )

    def __init__(self, secs: tuple[int, ...], tod: int, days: DayRule) -> None:
        self.secs = secs  # sorted seconds of the minute
        self.tod = tod  # bit m set: minute m of the day (0..1439) matches
        self.days = days
        self.months = days.months
        self.every_day = days.mode == EVERY_DAY
        self.first_month = (days.months & -days.months).bit_length() - 1
        self.last_month = days.months.bit_length() - 1
        self.first_tod = ((tod & -tod).bit_length() - 1) * 60 + secs[0]
        self.last_tod = (tod.bit_length() - 1) * 60 + secs[-1]

    # -- forward ----------------------------------------------------------------------

    def next_wall(self, y: int, mo: int, d: int, sod: int) -> Wall:
        """The first matching wall time at or after (y, mo, d, sod); ``sod`` may be
        86400 (the next day's midnight). Raises NoSlotError past year 9999."""
        if sod < DAY and self.months >> mo & 1:
            if self.every_day:
                matches = True
            else:
                _, ndays, first_weekday = month_info(y, mo)
                matches = bool(self.days.mask(ndays, first_weekday) >> d & 1)
            if matches:
                mod, sec = divmod(sod, 60)
                tod = self.tod
                secs = self.secs
                if tod >> mod & 1:
                    if sec <= secs[-1]:
                        return y, mo, d, mod * 60 + secs[bisect_left(secs, sec)]
                    mod += 1
                rest = tod >> mod
                if rest:
                    return y, mo, d, (mod + (rest & -rest).bit_length() - 1) * 60 + secs[0]
        y, mo, d = self.next_date(y, mo, d + 1)
        return y, mo, d, self.first_tod

    def next_date(self, y: int, mo: int, d: int) -> tuple[int, int, int]:
        """The first matching date at or after (y, mo, d); ``d`` may be past the month's end."""
        months = self.months
        while True:
            if months >> mo & 1:
                _, ndays, first_weekday = month_info(y, mo)
                if d <= ndays:
                    if self.every_day:
                        mask = (1 << (ndays + 1)) - 2
                    else:
                        mask = self.days.mask(ndays, first_weekday)
                    rest = mask >> d
                    if rest:
                        return y, mo, d + (rest & -rest).bit_length() - 1
            rest = months >> (mo + 1)
            if rest:
                mo += (rest & -rest).bit_length()
            else:
                y += 1
                if y > MAX_YEAR:
                    raise NoSlotError("the schedule has no slot before the year 10000")
                mo = self.first_month
            d = 1

    # -- backward ---------------------------------------------------------------------

    def prev_wall(self, y: int, mo: int, d: int, sod: int) -> Wall:
        """The last matching wall time at or before (y, mo, d, sod); ``sod`` may be -1
        (the previous day's last second). Raises NoSlotError before year 1."""
        if sod >= 0 and self.months >> mo & 1:
            if self.every_day:
                matches = True
            else:
                _, ndays, first_weekday = month_info(y, mo)
                matches = bool(self.days.mask(ndays, first_weekday) >> d & 1)
            if matches:
                mod, sec = divmod(sod, 60)
                tod = self.tod
                secs = self.secs
                if tod >> mod & 1 and sec >= secs[0]:
                    return y, mo, d, mod * 60 + secs[bisect_right(secs, sec) - 1]
                low = tod & ((1 << mod) - 1)
                if low:
                    return y, mo, d, (low.bit_length() - 1) * 60 + secs[-1]
        y, mo, d = self.prev_date(y, mo, d - 1)
        return y, mo, d, self.last_tod

    def prev_date(self, y: int, mo: int, d: int) -> tuple[int, int, int]:
        """The last matching date at or before (y, mo, d); ``d`` may be 0."""
        months = self.months
        while True:
            if d >= 1 and months >> mo & 1:
                _, ndays, first_weekday = month_info(y, mo)
                if self.every_day:
                    mask = (1 << (ndays + 1)) - 2
                else:
                    mask = self.days.mask(ndays, first_weekday)
                mask &= (2 << d) - 1
                if mask:
                    return y, mo, mask.bit_length() - 1
            low = months & ((1 << mo) - 1)
            if low:
                mo = low.bit_length() - 1
            else:
                y -= 1
                if y < MIN_YEAR:
                    raise NoSlotError("the schedule has no slot after the year 1")
                mo = self.last_month
            d = 31

    # -- on wall seconds ----------------------------------------------------------------

    def next_at(self, wall: int) -> int:
        """``next_wall`` on wall seconds (local epoch seconds)."""
        return to_seconds(*self.next_wall(*from_seconds(wall)))

    def prev_at(self, wall: int) -> int:
        """``prev_wall`` on wall seconds (local epoch seconds)."""
        return to_seconds(*self.prev_wall(*from_seconds(wall)))


def from_seconds(wall: int) -> Wall:
    """Wall seconds to (year, month, day, second of the day)."""
    epoch_day, sod = divmod(wall, DAY)
    if not -EPOCH_ORDINAL < epoch_day <= date.max.toordinal() - EPOCH_ORDINAL:
        raise NoSlotError("the schedule has no slot within the years 1 to 9999")
    day = date.fromordinal(epoch_day + EPOCH_ORDINAL)
    return day.year, day.month, day.day, sod


def to_seconds(y: int, mo: int, d: int, sod: int) -> int:
    """(year, month, day, second of the day) to wall seconds."""
    return (month_info(y, mo)[0] + d - 1) * DAY + sod
