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

Classes where the references disagree with each other are checked against the one
that accepts the form: "a-L" and "a-L/n" against croniter, "L/n" against cronsim;
forms both refuse are refused; white space other than ASCII space and tab between
fields is refused (croniter refuses the non-ASCII ones, cronsim accepts all).
"""

from __future__ import annotations

import re
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from itertools import islice
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter  # type: ignore[import-untyped]
from cronsim import CronSim, CronSimError
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from distcron.cron import CronSyntaxError, Schedule, parse
from distcron.cron.fields import FIELDS
from tests.cron.cron_strategies import (
    ASCII_CONTROL_BLANKS,
    DST_ZONES,
    OTHER_BLANKS,
    STEADY_ZONES,
    instants,
    last_day_stepped,
    plain_expressions,
    to_last_day,
    with_day_of_month,
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
    assert_agrees_with_cronsim(expr, zone, instant)


def assert_agrees_with_cronsim(expr: str, zone: str, instant: datetime) -> None:
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
    assert_agrees_with_croniter(expr, zone, instant)


def assert_agrees_with_croniter(expr: str, zone: str, instant: datetime) -> None:
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


# -- "L" in a range or with a step (day-of-month) ------------------------------------

NEW_YEAR = datetime(2026, 1, 1, tzinfo=UTC)


def first_slots(expr: str, count: int = 14) -> list[datetime]:
    return list(islice(parse(expr).iter(NEW_YEAR), count))


@EXAMPLES
@given(
    expr=with_day_of_month(to_last_day(), seconds=False),
    zone=st.sampled_from(STEADY_ZONES),
    instant=instants(1990, 2040),
)
def test_a_range_up_to_l_agrees_with_croniter(expr: str, zone: str, instant: datetime) -> None:
    assume(croniter_agrees_on(expr))
    assert_agrees_with_croniter(expr, zone, instant)


@pytest.mark.parametrize(
    "dom", ["29-L", "20-L/3", "1-L/10", "L,29-L", "5,29-L", "29-L/2", "1-L/31", "30-L"]
)
def test_ranges_up_to_l_give_croniters_slots(dom: str) -> None:
    expr = f"0 0 {dom} * *"
    it = croniter(expr, NEW_YEAR)
    assert first_slots(expr) == [it.get_next(datetime) for _ in range(14)]


def test_a_range_up_to_l_in_february_fires_in_leap_years_only() -> None:
    it = croniter("0 0 29-L 2 *", NEW_YEAR)
    expected = [it.get_next(datetime) for _ in range(3)]
    assert first_slots("0 0 29-L 2 *", 3) == expected
    assert [slot.year for slot in expected] == [2028, 2032, 2036]


def test_31_to_l_is_the_31st_where_croniter_reads_every_day() -> None:
    # Deliberate difference: croniter takes "31-L" for the one-value range "31-31",
    # which it reads as "*".
    assert [s.day for s in first_slots("0 0 31-L * *", 3)] == [31, 31, 31]
    assert croniter("0 0 31-L * *", NEW_YEAR).get_next(datetime).day == 2


@EXAMPLES
@given(
    expr=with_day_of_month(last_day_stepped()),
    zone=st.sampled_from(STEADY_ZONES),
    instant=instants(),
)
def test_l_with_a_step_agrees_with_cronsim(expr: str, zone: str, instant: datetime) -> None:
    assert_agrees_with_cronsim(expr, zone, instant)


@pytest.mark.parametrize("dom", ["L/2", "L/1", "L/45", "L/3,15", "1,L/7"])
def test_l_with_a_step_gives_cronsims_slots(dom: str) -> None:
    expr = f"0 0 {dom} * *"
    assert first_slots(expr) == list(islice(CronSim(expr, NEW_YEAR), 14))
    # From the last day to the end of the month is the last day alone.
    assert first_slots(expr) == first_slots(re.sub(r"L/\d+", "L", expr))


# -- forms both references refuse -----------------------------------------------------


@pytest.mark.parametrize(
    "expr",
    [
        "0 0 15W,16 * *",
        "0 0 16,15W * *",
        "0 0 1W,L * *",
        "0 0 L,31W * *",
        "0 0 * * MONL",
        "0 0 * * friL",
        "0 0 * * 1,sunl",
        "0 0 L * SATL",
    ],
)
def test_what_croniter_and_cronsim_both_refuse_is_refused(expr: str) -> None:
    with pytest.raises(CronSimError):
        CronSim(expr, NEW_YEAR)
    with pytest.raises(ValueError):
        croniter(expr, NEW_YEAR)
    with pytest.raises(CronSyntaxError):
        parse(expr)


# -- white space between fields ------------------------------------------------------


@EXAMPLES
@given(
    expr=plain_expressions(),
    blank=st.sampled_from(OTHER_BLANKS + ASCII_CONTROL_BLANKS),
    data=st.data(),
)
def test_only_ascii_spaces_and_tabs_separate_fields(
    expr: str, blank: str, data: st.DataObject
) -> None:
    fields = expr.split()
    k = data.draw(st.integers(0, len(fields) - 2), label="separator replaced")
    head = " ".join(fields[: k + 1])
    text = head + blank + " ".join(fields[k + 1 :])
    with pytest.raises(CronSyntaxError) as caught:
        parse(text)
    error = caught.value
    name = FIELDS[k + 6 - len(fields)].name
    assert (error.field, error.position) == (name, len(head))
    assert f"(U+{ord(blank):04X}) after the {name} field" in error.reason
    if blank in OTHER_BLANKS:
        with pytest.raises(ValueError):
            croniter(text, NEW_YEAR)
    # cronsim splits on any white space: it reads the text as written with a space
    # (a deliberate difference; the error says to retype it so).
    schedule = compile_or_check_never_fires(expr, "UTC")
    theirs = cronsim_next(text, NEW_YEAR)
    if schedule is not None and theirs is not None:
        assert schedule.next(NEW_YEAR) == theirs
