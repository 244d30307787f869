"""One line of English for a schedule, built from its compiled values.

Readable for the common shapes, and never wrong for odd ones: whatever does not fit
a common shape is listed value by value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import pairwise

from distcron.cron.days import AND, EVERY_DAY, DayRule
from distcron.cron.fields import (
    LastDay,
    LastWeekday,
    LastWorkday,
    NearestWorkday,
    NthWeekday,
    Special,
)
from distcron.cron.wall import WallPattern

_WEEKDAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
MONTH_NAMES = (
    "",
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
_LIST_LIMIT = 6  # more values than this are shown as ranges and steps
_CLOCK_TIMES = re.compile(r"at \d\d:\d\d")
# A "?" or an "H" standing alone as a word of letters (not the H of "thu").
SPREAD = re.compile(r"\?|(?<![A-Za-z])[Hh](?![A-Za-z])")


@dataclass(frozen=True, slots=True)
class _Times:
    seconds: tuple[int, ...]
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    has_seconds: bool


def describe(pattern: WallPattern, has_seconds: bool, tz: str, job: str | None, expr: str) -> str:
    """``job`` is the name that seeded ?/H fields, None when the expression did."""
    tod = pattern.tod
    times = _Times(
        pattern.secs,
        tuple(m for m in range(60) if any(tod >> (h * 60 + m) & 1 for h in range(24))),
        tuple(h for h in range(24) if tod >> (h * 60) & ((1 << 60) - 1)),
        has_seconds,
    )
    when = _time_phrase(times)
    days = _day_phrase(pattern.days)
    months = _month_phrase(pattern.days)
    single_date = _single_date(pattern.days)
    if single_date:
        days, months = single_date, ""
    if days == "" and months == "" and _CLOCK_TIMES.match(when):
        when += " every day"
    text = when
    for part in (days, months):
        if part:
            text += (" " if part.startswith(("on ", "in ")) else ", ") + part
    if SPREAD.search(expr) and not expr.lstrip().startswith("@"):
        source = f'job "{job}"' if job is not None else "the expression text"
        text += f" (? and H picked from {source})"
    return f"{text}, {tz}"


# -- times of day ------------------------------------------------------------------------


def _time_phrase(s: _Times) -> str:
    secs, mins, hours = s.seconds, s.minutes, s.hours
    if not s.has_seconds or secs == (0,):
        return _minutes_and_hours(mins, hours, "at")
    every_sec = _every(secs, 60, "second")
    if len(mins) == 60 and len(hours) == 24 and every_sec:
        return every_sec
    if len(secs) * len(mins) * len(hours) <= _LIST_LIMIT:
        return "at " + _join([f"{h:02}:{m:02}:{x:02}" for h in hours for m in mins for x in secs])
    sec_part = every_sec or f"at second{'s' if len(secs) > 1 else ''} {_numbers(secs)}"
    return f"{sec_part}, {_minutes_and_hours(mins, hours, 'during')}"


def _minutes_and_hours(mins: tuple[int, ...], hours: tuple[int, ...], at: str) -> str:
    all_hours = len(hours) == 24
    every_min = "every minute" if len(mins) == 60 else _every(mins, 60, "minute")
    if every_min:
        return every_min if all_hours else f"{every_min}, {_hour_spans(hours)}"
    if len(mins) * len(hours) <= _LIST_LIMIT:
        return f"{at} " + _join([f"{h:02}:{m:02}" for h in hours for m in mins])
    if len(mins) <= _LIST_LIMIT:
        past = _join([f":{m:02}" for m in mins])
    else:
        past = f"minutes {_numbers(mins)}"
    if all_hours:
        return f"every hour {at} {past}"
    every_hour = _every(hours, 24, "hour")
    if every_hour:
        return f"{every_hour} {at} {past}"
    step = _step(hours)
    if step:
        return (
            f"{at} {past} past every {_ordinal(step)} hour "
            f"from {hours[0]:02}:00 to {hours[-1]:02}:59"
        )
    if len(_runs(hours)) <= 2:
        return f"{at} {past} past the hour, {_hour_spans(hours)}"
    return f"{at} {past} past hours {_numbers(hours)}"


def _hour_spans(hours: tuple[int, ...]) -> str:
    return _join([f"{lo:02}:00–{hi:02}:59" for lo, hi in _runs(hours)])


def _step(values: tuple[int, ...]) -> int | None:
    """The common difference of at least three evenly spaced values (above 1)."""
    if len(values) < 3:
        return None
    step = values[1] - values[0]
    if step < 2 or any(b - a != step for a, b in pairwise(values)):
        return None
    return step


def _every(values: tuple[int, ...], size: int, unit: str) -> str | None:
    """Say "every 15 minutes" when ``values`` are 0, n, 2n, ... and n divides ``size``."""
    if len(values) < 2 or values[0] != 0:
        return None
    step = values[1]
    if size % step or values != tuple(range(0, size, step)):
        return None
    return f"every {unit}" if step == 1 else f"every {step} {unit}s"


# -- days ---------------------------------------------------------------------------------


def _day_phrase(rule: DayRule) -> str:
    if rule.mode == EVERY_DAY:
        return ""
    dom = _dom_phrase(rule)
    dow = _dow_phrase(rule)
    if rule.mode == AND:
        if dom is None:
            return dow or ""
        if dow is None:
            return dom
        return f"{dom}, if that day is {dow.removeprefix('on ')}"
    if dom is None or dow is None:  # OR with one side matching every day
        return ""
    return f"{dom} or {dow}"


def _dom_phrase(rule: DayRule) -> str | None:
    """None when day-of-month matches every day."""
    days = tuple(d for d in range(1, 32) if rule.dom >> d & 1)
    if len(days) == 31:
        return None
    parts = []
    step = _step(days)
    if step and len(days) > 3:
        parts.append(f"every {_ordinal(step)} day from the {_ordinal(days[0])}")
    elif days:
        parts.append(f"day{'s' if len(days) > 1 else ''} {_numbers(days)}")
    parts.extend(_dom_special(special) for special in rule.dom_specials)
    return f"on {_join(parts)} of the month"


def _dom_special(special: Special) -> str:
    if isinstance(special, LastDay):
        if special.before == 0:
            return "the last day"
        return f"the {_ordinal(special.before + 1)}-to-last day"
    if isinstance(special, NearestWorkday):
        return f"the weekday nearest the {_ordinal(special.day)}"
    assert isinstance(special, LastWorkday)
    return "the last weekday (Monday–Friday)"


def _dow_phrase(rule: DayRule) -> str | None:
    """None when day-of-week matches every day."""
    weekdays = [d for d in (1, 2, 3, 4, 5, 6, 0) if rule.dow >> d & 1]  # Monday first
    if len(weekdays) == 7:
        return None
    parts = []
    if len(weekdays) >= 3 and _consecutive([(d + 6) % 7 for d in weekdays]):
        parts.append(f"{_WEEKDAYS[weekdays[0]]} to {_WEEKDAYS[weekdays[-1]]}")
    elif weekdays:
        parts.append("on " + _join([_WEEKDAYS[d] for d in weekdays]))
    for special in rule.dow_specials:
        if isinstance(special, NthWeekday):
            nth = _ordinal(special.nth)
            parts.append(f"on the {nth} {_WEEKDAYS[special.weekday]} of the month")
        else:
            assert isinstance(special, LastWeekday)
            parts.append(f"on the last {_WEEKDAYS[special.weekday]} of the month")
    return _join(parts, "or")


def _single_date(rule: DayRule) -> str | None:
    """Say "on 29 February" for one plain day in one month, any weekday."""
    months = [m for m in range(1, 13) if rule.months >> m & 1]
    days = [d for d in range(1, 32) if rule.dom >> d & 1]
    if len(months) != 1 or len(days) != 1 or rule.dom_specials or rule.mode != AND:
        return None
    if rule.dow != 0x7F or rule.dow_specials:
        return None
    leap = " (in leap years)" if (days[0], months[0]) == (29, 2) else ""
    return f"on {days[0]} {MONTH_NAMES[months[0]]}{leap}"


def _month_phrase(rule: DayRule) -> str:
    months = [m for m in range(1, 13) if rule.months >> m & 1]
    if len(months) == 12:
        return ""
    if len(months) >= 3 and _consecutive(months):
        return f"in {MONTH_NAMES[months[0]]} to {MONTH_NAMES[months[-1]]}"
    return "in " + _join([MONTH_NAMES[m] for m in months])


# -- words --------------------------------------------------------------------------------


def _numbers(values: tuple[int, ...]) -> str:
    """1, 3 and 5 / 1–5 / 1–5 and 10."""
    items: list[str] = []
    for lo, hi in _runs(values):
        if hi > lo + 1:
            items.append(f"{lo}–{hi}")
        else:
            items.extend(str(v) for v in range(lo, hi + 1))
    return _join(items)


def _runs(values: tuple[int, ...]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for v in values:
        if runs and runs[-1][1] == v - 1:
            runs[-1] = (runs[-1][0], v)
        else:
            runs.append((v, v))
    return runs


def _consecutive(values: list[int]) -> bool:
    return all(b == a + 1 for a, b in pairwise(values))


def _join(items: list[str], word: str = "and") -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + f" {word} " + items[-1]


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"
