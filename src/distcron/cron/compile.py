"""From syntax to an interned, immutable schedule.

``parse`` is the package's entry point. Compiled schedules are cached by
(expression, zone, job when the expression has ?/H), and their parts (time masks,
day rules) are interned by value, so 100k jobs on a handful of patterns cost little.
"""

from __future__ import annotations

from functools import lru_cache
from itertools import islice
from typing import TypeVar

from distcron.cron.classic import CronSchedule
from distcron.cron.days import AND, EVERY_DAY, OR, DayRule
from distcron.cron.describe import MONTH_NAMES, SPREAD
from distcron.cron.errors import CronSyntaxError
from distcron.cron.every import IntervalSchedule
from distcron.cron.fields import (
    DAY_OF_MONTH,
    DAY_OF_WEEK,
    FIELDS,
    HOUR,
    MINUTE,
    MONTH,
    SECOND,
    FieldSyntax,
    Range,
    Special,
    Spread,
)
from distcron.cron.parser import CronSyntax, EverySyntax, parse_syntax
from distcron.cron.schedule import Schedule
from distcron.cron.spread import spread_hash
from distcron.cron.wall import WallPattern
from distcron.cron.zone import load_zone

_CACHE_SIZE = 1 << 17
# (expression, zone, job when it seeds ?/H) -> schedule, oldest first
_schedules: dict[tuple[str, str, str | None], Schedule] = {}

_interned: dict[object, object] = {}
T = TypeVar("T")


def parse(expr: str, tz: str = "UTC", job: str | None = None) -> Schedule:
    """Compile ``expr`` for zone ``tz``; ``job`` seeds ``?``/``H`` fields.

    Raises CronSyntaxError (a ValueError) naming the field and position, also for
    an unknown zone and for a schedule that can never fire.
    """
    uses_job = job is not None and not expr.lstrip().startswith("@") and SPREAD.search(expr)
    key = (expr, tz, job if uses_job else None)
    found = _schedules.get(key)
    if found is None:
        found = compile_schedule(*key)
        if len(_schedules) >= _CACHE_SIZE:
            _evict_oldest_half()
        _schedules[key] = found
    return found


def _evict_oldest_half() -> None:
    """Keep the newer half: dicts keep insertion order, and a batch keeps it O(1)
    per insertion on average (an lru_cache costs about twice the memory per entry)."""
    newer = list(islice(_schedules.items(), _CACHE_SIZE // 2, None))
    _schedules.clear()
    _schedules.update(newer)


def compile_schedule(expr: str, tz: str, job: str | None) -> Schedule:
    """Compile without the cache (``parse`` is the cached entry point)."""
    load_zone(tz)  # an unknown zone fails here, before any work
    syntax = _syntax(expr)
    if not isinstance(syntax, CronSyntax):
        return IntervalSchedule(expr, tz, syntax.seconds)
    # Without a job name the expression itself seeds the spread (documented).
    seed = expr if job is None else job
    values = [_values(field, seed) for field in syntax.fields]
    rule = _day_rule(syntax, values)
    seconds = tuple(sorted(values[SECOND][0]))
    tod = 0
    for hour in values[HOUR][0]:
        for minute in values[MINUTE][0]:
            tod |= 1 << (hour * 60 + minute)
    tod = _intern(tod, ("tod", tod))
    pattern = _intern(WallPattern(seconds, tod, rule), (seconds, tod, rule.key()))
    fields = syntax.fields
    fixed = not (fields[MINUTE].interval or fields[HOUR].interval)
    if syntax.has_seconds:
        fixed = fixed and not fields[SECOND].interval
    return CronSchedule(
        expr, tz, job if syntax.spread else None, pattern, fixed, syntax.has_seconds
    )


Values = tuple[frozenset[int], tuple[Special, ...]]


@lru_cache(maxsize=4096)
def _syntax(expr: str) -> CronSyntax | EverySyntax:
    """Syntax is shared by every job written with the same expression."""
    return parse_syntax(expr)


def _values(field: FieldSyntax, seed: str) -> Values:
    """A field's plain values (day-of-week folded to 0–6) and its Quartz specials."""
    fdef = FIELDS[field.index]
    values: set[int] = set()
    specials: list[Special] = []
    for item in field.items:
        if isinstance(item, Range):
            values.update(range(item.lo, item.hi + 1, item.step))
        elif isinstance(item, Spread):
            lo = fdef.spread_lo if item.lo is None else item.lo
            hi = fdef.spread_hi if item.hi is None else item.hi
            picked = spread_hash(seed, field.index)
            if item.step is None:
                values.add(lo + picked % (hi - lo + 1))
            else:
                start = lo + picked % min(item.step, hi - lo + 1)
                values.update(range(start, hi + 1, item.step))
        else:
            specials.append(item)
    if field.index == DAY_OF_WEEK:
        values = {v % 7 for v in values}
    return frozenset(values), tuple(sorted(set(specials), key=repr))


def _day_rule(syntax: CronSyntax, values: list[Values]) -> DayRule:
    fields = syntax.fields
    months = sum(1 << m for m in values[MONTH][0])
    dom_values, dom_specials = values[DAY_OF_MONTH]
    dow_values, dow_specials = values[DAY_OF_WEEK]
    dom = sum(1 << d for d in dom_values)
    dow = sum(1 << d for d in dow_values)
    every_dom = len(dom_values) == 31
    every_dow = len(dow_values) == 7
    if every_dom and every_dow:
        mode = EVERY_DAY  # every day matches, whatever the rule and any specials
    elif fields[DAY_OF_MONTH].star or fields[DAY_OF_WEEK].star:
        mode = AND
    else:
        mode = OR
    key = (months, dom, dom_specials, dow, dow_specials, mode)
    rule = _intern(DayRule(*key), ("rule", *key))
    if not rule.ever_matches():
        raise _never_fires(syntax, rule)
    return rule


def _never_fires(syntax: CronSyntax, rule: DayRule) -> CronSyntaxError:
    dom = syntax.fields[DAY_OF_MONTH]
    months = [m for m in range(1, 13) if rule.months >> m & 1]
    month_names = [MONTH_NAMES[m] for m in months]
    shown = ", ".join(month_names[:-1]) + (" or " if len(months) > 1 else "") + month_names[-1]
    if rule.mode == AND and rule.dow == 0x7F and not rule.dow_specials:
        # The day-of-month alone is at fault.
        if rule.dom_specials:
            what = f"{dom.text!r} never falls"
        else:
            days = [d for d in range(1, 32) if rule.dom >> d & 1]
            what = f"day {days[0]} never occurs" if len(days) == 1 else "none of those days occurs"
        reason = f"{what} in {shown}, so the schedule would never fire"
    else:
        reason = (
            f"no day in {shown} matches both day-of-month {dom.text!r} and day-of-week "
            f"{syntax.fields[DAY_OF_WEEK].text!r}, so the schedule would never fire"
        )
    return CronSyntaxError(syntax.expr, reason, FIELDS[DAY_OF_MONTH].name, dom.position)


def _intern(value: T, key: object) -> T:
    """One shared object per distinct key (bounded: reset when it grows too big)."""
    found = _interned.get(key)
    if found is None:
        if len(_interned) >= _CACHE_SIZE:
            _interned.clear()
        _interned[key] = value
        return value
    return found  # type: ignore[return-value]
