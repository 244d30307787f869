"""Which days of a month a schedule fires on.

A month's matching days are a bitmask (bit d set = day d matches). The mask depends
only on the month's length and the weekday of its 1st, so each day rule keeps at most
28 masks (4 lengths x 7 weekdays) and never steps day by day through a calendar.
"""

from __future__ import annotations

import calendar
from datetime import date
from functools import lru_cache

from distcron.cron.fields import (
    LastDay,
    LastWorkday,
    NearestWorkday,
    NthWeekday,
    Special,
)

EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
MIN_YEAR, MAX_YEAR = 1, 9999

# Day rule modes (Vixie cron / cronie): a star in either day field means both must
# match (AND); when neither field starts with a star a day matching either will do (OR).
EVERY_DAY, AND, OR = 0, 1, 2

# year * 12 + month -> (days since 1970-01-01 of the 1st, length, weekday of the 1st, 0 = Sunday)
_MONTHS: dict[int, tuple[int, int, int]] = {}


def month_info(year: int, month: int) -> tuple[int, int, int]:
    """(epoch day of the 1st, number of days, weekday of the 1st with 0 = Sunday)."""
    key = year * 12 + month
    info = _MONTHS.get(key)
    if info is None:
        first = date(year, month, 1).toordinal()
        # date.toordinal() is 1 on Monday 0001-01-01, so ordinal % 7 counts from Sunday.
        info = (first - EPOCH_ORDINAL, calendar.monthrange(year, month)[1], first % 7)
        _MONTHS[key] = info
    return info


@lru_cache(maxsize=1024)
def weekday_bits(weekdays: int, first_weekday: int) -> int:
    """Days 1..31 (as bits) that fall on a weekday in ``weekdays`` (bit 0 = Sunday) in a
    month whose 1st is ``first_weekday``."""
    bits = 0
    for day in range(1, 32):
        if weekdays >> ((first_weekday + day - 1) % 7) & 1:
            bits |= 1 << day
    return bits


def special_day(special: Special, ndays: int, first_weekday: int) -> int:
    """The day a Quartz special picks in a month, or 0 when it picks none."""
    if isinstance(special, LastDay):
        return max(ndays - special.before, 0)
    if isinstance(special, NearestWorkday):
        return _nearest_workday(special.day, ndays, first_weekday)
    if isinstance(special, LastWorkday):
        return _nearest_workday(ndays, ndays, first_weekday)
    if isinstance(special, NthWeekday):
        first = 1 + (special.weekday - first_weekday) % 7
        day = first + 7 * (special.nth - 1)
        return day if day <= ndays else 0
    last_weekday = (first_weekday + ndays - 1) % 7
    return ndays - (last_weekday - special.weekday) % 7


def _nearest_workday(day: int, ndays: int, first_weekday: int) -> int:
    """Quartz ``nW``: the Monday–Friday nearest ``day`` without leaving the month. A day
    the month does not have picks nothing (as a plain day-of-month would)."""
    if day > ndays:
        return 0
    weekday = (first_weekday + day - 1) % 7
    if weekday == 6:  # Saturday: the Friday before, or Monday the 3rd if the 1st
        return day - 1 if day > 1 else day + 2
    if weekday == 0:  # Sunday: the Monday after, or the Friday before if the last
        return day + 1 if day < ndays else day - 2
    return day


class DayRule:
    """Months, day-of-month and day-of-week of one schedule, compiled.

    Instances are interned by value, so the lazily filled mask table is shared by
    every schedule with the same day fields.
    """

    __slots__ = ("_fires", "_masks", "dom", "dom_specials", "dow", "dow_specials", "mode", "months")

    def __init__(
        self,
        months: int,
        dom: int,
        dom_specials: tuple[Special, ...],
        dow: int,
        dow_specials: tuple[Special, ...],
        mode: int,
    ) -> None:
        self.months = months  # bits 1..12
        self.dom = dom  # bits 1..31
        self.dom_specials = dom_specials
        self.dow = dow  # bits 0..6, 0 = Sunday
        self.dow_specials = dow_specials
        self.mode = mode
        self._masks: list[int | None] = [None] * 28
        self._fires: bool | None = None

    def key(self) -> tuple[int, int, tuple[Special, ...], int, tuple[Special, ...], int]:
        return (self.months, self.dom, self.dom_specials, self.dow, self.dow_specials, self.mode)

    def mask(self, ndays: int, first_weekday: int) -> int:
        """Matching days (bits 1..ndays) of a month of ``ndays`` days starting on
        ``first_weekday``; the month itself is not checked."""
        slot = (ndays - 28) * 7 + first_weekday
        mask = self._masks[slot]
        if mask is None:
            mask = self._compute(ndays, first_weekday)
            self._masks[slot] = mask
        return mask

    def _compute(self, ndays: int, first_weekday: int) -> int:
        full = (1 << (ndays + 1)) - 2
        if self.mode == EVERY_DAY:
            return full
        dom = self.dom
        for special in self.dom_specials:
            dom |= 1 << special_day(special, ndays, first_weekday)
        dow = weekday_bits(self.dow, first_weekday)
        for special in self.dow_specials:
            dow |= 1 << special_day(special, ndays, first_weekday)
        both = dom & dow if self.mode == AND else dom | dow
        return both & full  # also drops bit 0, set by specials that pick no day

    def month_lengths(self) -> list[tuple[int, int]]:
        """(month, possible length) pairs of the selected months."""
        pairs: list[tuple[int, int]] = []
        for month in range(1, 13):
            if self.months >> month & 1:
                pairs.extend((month, n) for n in ((28, 29) if month == 2 else (_LENGTH[month],)))
        return pairs

    def ever_matches(self) -> bool:
        """Whether any day of any selected month ever matches. Each (length, weekday of
        the 1st) combination occurs for every month within the 400-year Gregorian
        cycle, so checking the combinations is exact."""
        if self._fires is None:
            # Any day-of-week item matches in some month of every kind (even 5#5 in a
            # leap February), so only an AND with a day-of-month needs the full check.
            fires = (
                self.mode != AND
                or self.dom == _EVERY_DOM
                or any(
                    self.mask(ndays, first)
                    for _, ndays in self.month_lengths()
                    for first in range(7)
                )
            )
            self._fires = fires
        return self._fires


_EVERY_DOM = (1 << 32) - 2
_LENGTH = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
