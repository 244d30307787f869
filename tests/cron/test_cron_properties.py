"""Properties of every schedule, in every zone, DST or not."""

from __future__ import annotations

from datetime import datetime, timedelta
from itertools import islice, pairwise
from zoneinfo import ZoneInfo

from cronsim import CronSim
from hypothesis import given, settings
from hypothesis import strategies as st

from distcron.cron import CronSyntaxError, Schedule, parse
from tests.cron.cron_strategies import (
    DST_ZONES,
    STEADY_ZONES,
    instants,
    plain_expressions,
    rich_expressions,
)

EXAMPLES = settings(max_examples=250, deadline=None)
ZONES = st.sampled_from(STEADY_ZONES + DST_ZONES)


def compiled(expr: str, zone: str, job: str) -> Schedule | None:
    try:
        return parse(expr, zone, job)
    except CronSyntaxError as error:
        assert "never fire" in str(error)
        return None


@EXAMPLES
@given(expr=rich_expressions(), zone=ZONES, instant=instants(), job=st.text(max_size=8))
def test_next_is_after_prev_is_before_and_they_agree(
    expr: str, zone: str, instant: datetime, job: str
) -> None:
    schedule = compiled(expr, zone, job)
    if schedule is None:
        return
    x = instant.astimezone(ZoneInfo(zone))
    n = schedule.next(x)
    p = schedule.prev(x)
    assert p < x < n
    assert n.tzinfo is ZoneInfo(zone) and p.tzinfo is ZoneInfo(zone)
    # Nothing lies between p and x or between x and n, seen from either side.
    assert schedule.prev(n) <= x
    assert schedule.next(p) >= x
    assert schedule.next(schedule.prev(n)) == n
    assert schedule.prev(schedule.next(p)) == p


@EXAMPLES
@given(expr=rich_expressions(), zone=ZONES, instant=instants(), job=st.text(max_size=8))
def test_iter_is_strictly_increasing_and_prev_walks_it_back(
    expr: str, zone: str, instant: datetime, job: str
) -> None:
    schedule = compiled(expr, zone, job)
    if schedule is None:
        return
    x = instant.astimezone(ZoneInfo(zone))
    got = list(islice(schedule.iter(x), 6))
    assert all(a < b for a, b in pairwise(got))
    assert [schedule.prev(b) for b in got[1:]] == got[:-1]
    # Results are real instants: converting to UTC and back changes nothing.
    for slot in got:
        assert slot.astimezone(ZoneInfo("UTC")).astimezone(ZoneInfo(zone)) == slot
        assert slot.microsecond == 0


def matches_on_the_wall(expr: str, slot: datetime) -> bool:
    """cronsim, on naive wall time, agrees the wall time of ``slot`` matches."""
    wall = slot.replace(tzinfo=None, fold=0)
    return next(CronSim(expr, wall - timedelta(seconds=1))) == wall


@EXAMPLES
@given(
    expr=plain_expressions(),
    zone=ZONES,
    instant=instants(),
)
def test_every_slot_matches_the_expression_in_local_time_unless_shifted(
    expr: str, zone: str, instant: datetime
) -> None:
    schedule = compiled(expr, zone, "")
    if schedule is None:
        return
    x = instant.astimezone(ZoneInfo(zone))
    for _ in range(3):
        x, note = schedule.next_with_note(x)
        if note is not None and note.startswith("shifted"):
            continue  # a fixed time from a DST gap, run at the end of the gap
        assert matches_on_the_wall(expr, x)
