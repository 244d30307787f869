"""Near real DST changes, next and prev equal a brute-force scan of instants.

The scan states the DST rules directly, minute by minute in UTC: an interval
schedule fires whenever the wall time matches; a fixed-time schedule fires when the
wall time matches and is its first occurrence (fold 0), and at the first instant
after a jump when a skipped wall time matches. Whether a wall time matches is asked
of cronsim on naive datetimes, so the scan shares no code with the engine.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from cronsim import CronSim
from hypothesis import given, settings
from hypothesis import strategies as st

from distcron.cron import CronSyntaxError, parse
from tests.cron.cron_helpers import changes
from tests.cron.cron_strategies import DST_ZONES, plain_expressions

MINUTE = timedelta(minutes=1)
WINDOW = timedelta(days=1)


def matching_walls(expr: str, start: datetime, end: datetime) -> set[datetime]:
    walls = set()
    for wall in CronSim(expr, start.replace(tzinfo=None, fold=0)):
        if wall > end.replace(tzinfo=None):
            break
        walls.add(wall)
    return walls


def is_slot(t: datetime, tz: ZoneInfo, walls: set[datetime], fixed: bool) -> bool:
    local = t.astimezone(tz)
    wall = local.replace(tzinfo=None, fold=0)
    if not fixed:
        return wall in walls
    if wall in walls and local.fold == 0:
        return True
    jump = local.utcoffset() - (t - MINUTE).astimezone(tz).utcoffset()  # type: ignore[operator]
    if jump > timedelta(0):  # t is the first instant after a gap: run what was skipped
        skipped = wall - jump
        while skipped < wall:
            if skipped in walls:
                return True
            skipped += MINUTE
    return False


def scan(
    expr: str, zone: str, start: datetime, step: timedelta, limit: datetime
) -> datetime | None:
    tz = ZoneInfo(zone)
    fields = expr.split()
    fixed = not (fields[0].startswith("*") or fields[1].startswith("*"))
    low, high = sorted((start, limit))
    walls = matching_walls(expr, low.astimezone(tz) - 2 * WINDOW, high.astimezone(tz) + WINDOW)
    t = start
    while (t <= limit) if step > timedelta(0) else (t >= limit):
        if is_slot(t, tz, walls, fixed):
            return t.astimezone(tz)
        t += step
    return None


@st.composite
def near_a_change(draw: st.DrawFn) -> tuple[str, str, datetime, datetime]:
    """(expression, zone, change, instant): the hour field often names the hours
    the change skips or repeats, so that fixed times land in gaps and repeats."""
    zone = draw(st.sampled_from(DST_ZONES))
    change = draw(st.sampled_from(changes(zone)))
    tz = ZoneInfo(zone)
    walls = sorted((change + d).astimezone(tz).replace(tzinfo=None) for d in (-MINUTE, 0 * MINUTE))
    hours = []  # every wall hour the change skips or repeats, and its neighbours
    wall = walls[0] - 30 * MINUTE
    while wall <= walls[1] + 30 * MINUTE:
        hours.append(wall.hour)
        wall += 30 * MINUTE
    near = [str(h) for h in hours] + [",".join(map(str, sorted(set(hours))))]
    expr = draw(plain_expressions(seconds=False, daily=True)).split()
    if draw(st.integers(0, 3)):
        expr[1] = draw(st.sampled_from(near))
    if draw(st.booleans()):
        expr[0] = draw(st.sampled_from(["0", "30", "0,30", "5-10", "15/20"]))
    # Instants right at the change find the edge cases; the rest cover the day around.
    offset = draw(st.one_of(st.integers(-3, 3), st.integers(-20 * 3600, 20 * 3600)))
    return " ".join(expr), zone, change, change + timedelta(seconds=offset)


@settings(max_examples=200, deadline=None)
@given(case=near_a_change())
def test_next_and_prev_near_a_change_equal_a_brute_force_scan(
    case: tuple[str, str, datetime, datetime],
) -> None:
    expr, zone, change, x = case
    try:
        schedule = parse(expr, zone)
    except CronSyntaxError:
        return
    whole = x.replace(second=0)
    expected = scan(expr, zone, whole + MINUTE, MINUTE, change + WINDOW)
    ours = schedule.next(x.astimezone(ZoneInfo(zone)))
    if expected is None:
        assert ours > change + WINDOW
    else:
        assert ours == expected
        assert ours.isoformat() == expected.isoformat()  # the same fold
    before = whole if whole < x else whole - MINUTE
    expected = scan(expr, zone, before, -MINUTE, change - WINDOW)
    ours = schedule.prev(x)
    if expected is None:
        assert ours < change - WINDOW
    else:
        assert ours.isoformat() == expected.isoformat()
