"""Differential tests: our next/prev equal cronsim's and croniter's where the
semantics agree. Every excluded case is a deliberate difference (docs/cron.md):

* cronsim reads "a-a/n" as "a/n"; the strategies never write a one-value stepped range.
* DST: cronsim skips hours after a 30-minute change (Australia/Lord_Howe), and does
  not fix up 6-field expressions; croniter runs a fixed time twice in a repeated hour.
  So comparisons in zones with DST stay away from their transitions.
* croniter ORs day-of-month and day-of-week when one of them is "*/n"; Vixie cron,
  cronie, cronsim and distcron AND them. croniter puts seconds last in 6 fields,
  reads a one-value range such as "3-3" as "*", and ends "1/2" in day-of-week at 6
  (Saturday) where cronsim and distcron end it at 7 (Sunday).
"""

from __future__ import annotations

import re
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from croniter import croniter  # type: ignore[import-untyped]
from cronsim import CronSim, CronSimError
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from distcron.cron import CronSyntaxError, Schedule, parse
from tests.cron.cron_strategies import (
    DST_ZONES,
    STEADY_ZONES,
    instants,
    plain_expressions,
)

EXAMPLES = settings(max_examples=250, deadline=None)
ONE_VALUE_RANGE = re.compile(r"(?<![\w-])(\w+)-\1(?![\w-])")


def cronsim_next(expr: str, after: datetime, reverse: bool = False) -> datetime | None:
    try:
        return next(CronSim(expr, after, reverse=reverse))
    except StopIteration:  # cronsim gives up after 50 years without a match
        return None


def compile_or_check_never_fires(expr: str, zone: str) -> Schedule | None:
    """The schedule, or None when we refuse it as never firing (and cronsim agrees)."""
    try:
        return parse(expr, zone)
    except CronSyntaxError as error:
        assert "never fire" in str(error)
        after = datetime(2000, 1, 1, tzinfo=UTC)
        with suppress(CronSimError):  # cronsim may refuse it too
            assert cronsim_next(expr, after) is None
        return None


def steady_between(zone: ZoneInfo, a: datetime, b: datetime) -> bool:
    """No offset change from a day before ``a`` to a day after ``b`` (probed hourly)."""
    start, end = a - timedelta(days=1), b + timedelta(days=1)
    if end - start > timedelta(days=4):
        return False
    offset = start.astimezone(zone).utcoffset()
    t = start
    while t <= end:
        if t.astimezone(zone).utcoffset() != offset:
            return False
        t += timedelta(hours=1)
    return True


@EXAMPLES
@given(expr=plain_expressions(), zone=st.sampled_from(STEADY_ZONES), instant=instants())
def test_next_and_prev_agree_with_cronsim_in_steady_zones(
    expr: str, zone: str, instant: datetime
) -> None:
    after = instant.astimezone(ZoneInfo(zone))
    schedule = compile_or_check_never_fires(expr, zone)
    if schedule is None:
        return
    theirs = cronsim_next(expr, after)
    if theirs is not None:
        assert schedule.next(after) == theirs
    theirs = cronsim_next(expr, after, reverse=True)
    if theirs is not None:
        assert schedule.prev(after) == theirs


@EXAMPLES
@given(
    expr=plain_expressions(seconds=False, daily=True),
    zone=st.sampled_from(DST_ZONES),
    instant=instants(2000, 2040),
)
def test_next_agrees_with_cronsim_in_dst_zones_away_from_changes(
    expr: str, zone: str, instant: datetime
) -> None:
    tz = ZoneInfo(zone)
    after = instant.astimezone(tz)
    ours = parse(expr, zone).next(after)
    assume(steady_between(tz, after, ours))
    assert ours == cronsim_next(expr, after)
    assert parse(expr, zone).prev(ours) == cronsim_next(expr, ours, reverse=True)


def croniter_agrees_on(expr: str) -> bool:
    if ONE_VALUE_RANGE.search(expr):
        return False  # croniter reads "3-3" as "*"
    dom, dow = expr.split()[2], expr.split()[4]
    if re.search(r"(^|,)\d+/", dow):
        return False  # croniter runs "1/2" in day-of-week up to 6, not 7 (Sunday)
    star = {dom.startswith("*"), dow.startswith("*")}
    # Both exactly "*", or one exactly "*", or neither starting with "*".
    return star == {False} or "*" in (dom, dow)


@EXAMPLES
@given(
    # croniter reads "2-tue" like "3-3" (as "*"): names are left out.
    expr=plain_expressions(seconds=False, names=False),
    zone=st.sampled_from(STEADY_ZONES),
    instant=instants(1990, 2040),
)
def test_next_and_prev_agree_with_croniter_where_its_day_rule_agrees(
    expr: str, zone: str, instant: datetime
) -> None:
    assume(croniter_agrees_on(expr))
    after = instant.replace(microsecond=0).astimezone(ZoneInfo(zone))
    schedule = compile_or_check_never_fires(expr, zone)
    if schedule is None:
        return
    it = croniter(expr, after)
    assert schedule.next(after) == it.get_next(datetime)
    assert schedule.prev(after) == croniter(expr, after).get_prev(datetime)


def test_croniter_and_distcron_differ_on_a_stepped_day_of_month() -> None:
    # Documented difference: croniter ORs here, Vixie cron and distcron AND.
    after = datetime(2026, 1, 1, tzinfo=UTC)
    ours = parse("0 0 */10 * 1").next(after)
    assert ours == datetime(2026, 5, 11, tzinfo=UTC)  # the 11th that is a Monday
    assert croniter("0 0 */10 * 1", after).get_next(datetime) != ours
