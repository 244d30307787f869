"""Six-field (seconds) schedules across real DST changes follow the five-field rules.

A six-field schedule is fixed-time when none of second, minute and hour is an
interval field (text starting with "*" or "H/"): a slot in a skipped interval runs at
the first instant after the jump, a slot in a repeated interval runs once, at its
first occurrence. Otherwise it is an interval schedule and keeps its real spacing.
cronsim treats every six-field schedule as an interval one: it agrees with distcron
on interval schedules and differs, deliberately, on fixed-time ones (docs/cron.md).

The reference here maps wall times to instants with zoneinfo alone: which wall times
match is asked of cronsim on naive datetimes, where it has no DST handling at all.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import islice, pairwise, takewhile
from zoneinfo import ZoneInfo

import pytest
from cronsim import CronSim
from hypothesis import given, settings
from hypothesis import strategies as st

from distcron.cron import parse
from tests.cron.cron_helpers import at, changes
from tests.cron.cron_strategies import DST_ZONES, plain_field

NEW_YORK, BERLIN = "America/New_York", "Europe/Berlin"
# (zone, 01:58 local on the spring-forward day, 00:58 local on the fall-back day)
SPRING = [(NEW_YORK, at(NEW_YORK, 2026, 3, 8, 1, 58)), (BERLIN, at(BERLIN, 2026, 3, 29, 1, 58))]
FALL = [(NEW_YORK, at(NEW_YORK, 2026, 11, 1, 0, 58)), (BERLIN, at(BERLIN, 2026, 10, 25, 1, 58))]
# cronsim loses slots around changes in zones with offsets or changes that are not
# whole hours (Lord Howe's 30-minute change, Chatham's +12:45): a cronsim bug, not a rule.
CRONSIM_ZONES = [z for z in DST_ZONES if z not in ("Australia/Lord_Howe", "Pacific/Chatham")]


def ours(expr: str, zone: str, after: datetime, count: int) -> list[str]:
    return [s.isoformat() for s in islice(parse(expr, zone).iter(after), count)]


def cronsims(expr: str, after: datetime, count: int) -> list[str]:
    return [s.isoformat() for s in islice(CronSim(expr, after), count)]


def is_fixed(expr: str) -> bool:
    return not any(f.startswith(("*", "H/")) for f in expr.split()[:3])


def reference(expr: str, zone: str, start: datetime, end: datetime, fixed: bool) -> list[datetime]:
    """Slots in (start, end] by the rule, from naive matching walls and zoneinfo."""
    tz = ZoneInfo(zone)
    margin = timedelta(hours=4)
    first_wall = (start - margin).astimezone(tz).replace(tzinfo=None)
    last_wall = (end + margin).astimezone(tz).replace(tzinfo=None)
    walls = takewhile(lambda w: w <= last_wall, CronSim(expr, first_wall))
    found: set[datetime] = set()
    for wall in walls:
        early, late = (wall.replace(tzinfo=tz, fold=f).astimezone(UTC) for f in (0, 1))
        if early.astimezone(tz).replace(tzinfo=None) != wall:
            # In a gap: fold 1 reads it with the offset after the jump, fold 0 with the
            # one before, and the jump lies between those two readings.
            if fixed:
                found.add(next(c for c in changes(zone) if late <= c <= early))
        elif early != late and not fixed:
            found.update((early, late))  # repeated: an interval schedule runs in both
        else:
            found.add(early)
    return sorted(t for t in found if start < t <= end)


@pytest.mark.parametrize(("zone", "after"), SPRING)
@pytest.mark.parametrize("expr", ["0 30 2 * * *", "15 30 2 * * *", "59 59 2 * * *"])
def test_a_fixed_six_field_time_in_the_gap_runs_at_the_end_of_the_jump(
    zone: str, after: datetime, expr: str
) -> None:
    day = after.date().isoformat()
    offset = after.replace(hour=4).strftime("%z")
    offset = f"{offset[:3]}:{offset[3:]}"
    assert ours(expr, zone, after, 2)[0] == f"{day}T03:00:00{offset}"
    # cronsim treats a seconds field as an interval schedule and skips the day.
    assert not cronsims(expr, after, 1)[0].startswith(day)


@pytest.mark.parametrize(("zone", "after"), SPRING)
def test_several_fixed_seconds_in_the_gap_run_once_with_the_slot_at_its_end(
    zone: str, after: datetime
) -> None:
    slots = ours("0-59/20 0,30 2,3 * * *", zone, after, 4)
    times = [s[11:19] for s in slots]
    assert times == ["03:00:00", "03:00:20", "03:00:40", "03:30:00"]
    assert parse("0-59/20 0,30 2,3 * * *", zone).next_with_note(after)[1] == (
        f"shifted: 02:00 does not exist on {after.date().isoformat()}"
    )


@pytest.mark.parametrize(("zone", "after"), SPRING)
@pytest.mark.parametrize(
    ("expr", "times"),
    [
        ("*/20 30 2 * * *", []),  # seconds are an interval: nothing that day
        ("30 * * * * *", ["01:58:30", "01:59:30", "03:00:30", "03:01:30"]),
        ("0 0 * * * *", ["03:00:00", "04:00:00", "05:00:00", "06:00:00"]),
        ("*/30 59 1-3 * * *", ["01:59:00", "01:59:30", "03:59:00", "03:59:30"]),
    ],
)
def test_an_interval_six_field_schedule_skips_the_gap_as_cronsim_does(
    zone: str, after: datetime, expr: str, times: list[str]
) -> None:
    got = ours(expr, zone, after, 4)
    assert got == cronsims(expr, after, 4)
    day = after.date().isoformat()
    assert [s[11:19] for s in got if s.startswith(day)] == times


@pytest.mark.parametrize(("zone", "after"), FALL)
def test_a_fixed_six_field_time_in_a_repeat_runs_once(zone: str, after: datetime) -> None:
    hour = after.hour + 1  # the repeated hour: 01 in New York, 02 in Berlin
    expr = f"15 30 {hour} * * *"
    got = ours(expr, zone, after, 2)
    assert got[0][11:19] == f"{hour:02}:30:15"
    assert got[1][:10] != got[0][:10]  # the next run is the next day
    # cronsim runs it in both copies of the hour.
    theirs = cronsims(expr, after, 2)
    assert theirs[0] == got[0] and theirs[1][11:19] == got[0][11:19] != theirs[1]


@pytest.mark.parametrize(("zone", "after"), FALL)
def test_an_interval_six_field_schedule_runs_in_both_copies(zone: str, after: datetime) -> None:
    hour = after.hour + 1
    expr = f"0 */30 {hour} * * *"
    got = ours(expr, zone, after, 4)
    assert got == cronsims(expr, after, 4)
    assert [s[11:19] for s in got] == [f"{hour:02}:{m}:00" for m in ("00", "30", "00", "30")]
    assert len({s[19:] for s in got}) == 2  # two offsets: the first and the second copy


def test_prev_finds_the_shifted_six_field_slot() -> None:
    schedule = parse("15 30 2 * * *", NEW_YORK)
    assert schedule.prev(at(NEW_YORK, 2026, 3, 8, 3, 0, 1)).isoformat() == (
        "2026-03-08T03:00:00-04:00"
    )
    assert schedule.prev(at(NEW_YORK, 2026, 3, 8, 3, 0, 0)).isoformat() == (
        "2026-03-07T02:30:15-05:00"
    )


SECONDS = st.sampled_from(["0", "30", "0,15", "10-50/20", "5/30", "*/20", "*/30", "*"])


@st.composite
def six_field_near_a_change(draw: st.DrawFn, zones: list[str]) -> tuple[str, str, datetime]:
    """(expression, zone, instant within a few hours before a real change); the hour
    field often names the hours around the change."""
    zone = draw(st.sampled_from(zones))
    change = draw(st.sampled_from(changes(zone)))
    tz = ZoneInfo(zone)
    near = sorted({(change + timedelta(minutes=m)).astimezone(tz).hour for m in (-61, -1, 0, 60)})
    hour = draw(st.one_of(plain_field(0, 23), st.sampled_from([str(h) for h in near])))
    minute = draw(st.one_of(plain_field(0, 59), st.sampled_from(["0", "30", "59", "0,30"])))
    expr = f"{draw(SECONDS)} {minute} {hour} * * *"
    return expr, zone, change - timedelta(seconds=draw(st.integers(0, 3 * 3600)))


@settings(max_examples=120, deadline=None)
@given(case=six_field_near_a_change(DST_ZONES))
def test_six_field_slots_near_real_changes_follow_the_rule(case: tuple[str, str, datetime]) -> None:
    expr, zone, start = case
    end = start + timedelta(hours=6)
    expected = reference(expr, zone, start, end, is_fixed(expr))
    schedule = parse(expr, zone)
    got = list(takewhile(lambda s: s <= end, schedule.iter(start)))
    assert [s.astimezone(UTC) for s in got] == expected
    for slot in got:  # the same fold as zoneinfo's reading of the instant
        assert slot.isoformat() == slot.astimezone(UTC).astimezone(ZoneInfo(zone)).isoformat()
    for earlier, later in pairwise(got):
        assert schedule.prev(later).isoformat() == earlier.isoformat()


@settings(max_examples=50, deadline=None)
@given(case=six_field_near_a_change(CRONSIM_ZONES))
def test_cronsim_reads_every_six_field_schedule_as_an_interval_one(
    case: tuple[str, str, datetime],
) -> None:
    """Where distcron's rule makes a schedule an interval one, cronsim agrees with it;
    for fixed-time ones cronsim is the interval reading (the deliberate difference)."""
    expr, zone, start = case
    end = start + timedelta(hours=6)
    after = start.astimezone(ZoneInfo(zone)).replace(microsecond=0)
    theirs = [t.astimezone(UTC) for t in takewhile(lambda t: t <= end, CronSim(expr, after))]
    assert theirs == reference(expr, zone, after, end, fixed=False)
    if not is_fixed(expr):
        got = takewhile(lambda s: s <= end, parse(expr, zone).iter(after))
        assert [s.astimezone(UTC) for s in got] == theirs
