"""Daylight saving, as cronie runs it (promise 6), pinned to real zones and dates.

A fixed-time schedule (minute and hour fields not starting with "*" or "H/") runs a
slot from a skipped hour at the first instant after the jump, and a slot from a
repeated hour once, at its first occurrence. Other schedules keep their real spacing:
nonexistent times are skipped and repeated ones run in both copies.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import islice, pairwise

import pytest

from distcron.cron import parse
from tests.cron.cron_helpers import at


def run(expr: str, tz: str, after: datetime, count: int) -> list[str]:
    return [s.isoformat() for s in islice(parse(expr, tz).iter(after), count)]


def back(expr: str, tz: str, before: datetime, count: int) -> list[str]:
    schedule = parse(expr, tz)
    out = []
    for _ in range(count):
        before = schedule.prev(before)
        out.append(before.isoformat())
    return out


def real_gaps(slots: list[datetime]) -> set[timedelta]:
    utc = [s.astimezone(UTC) for s in slots]
    return {b - a for a, b in pairwise(utc)}


# (zone, spring-forward day, a fixed time inside its gap, where it runs,
#  fall-back day, a fixed time inside its repeat, its first occurrence)
ZONES = [
    ("Europe/Amsterdam", (2026, 3, 29), "30 2", "2026-03-29T03:00:00+02:00",
     (2026, 10, 25), "30 2", "2026-10-25T02:30:00+02:00"),
    ("America/New_York", (2026, 3, 8), "30 2", "2026-03-08T03:00:00-04:00",
     (2026, 11, 1), "30 1", "2026-11-01T01:30:00-04:00"),
    ("Australia/Lord_Howe", (2026, 10, 4), "15 2", "2026-10-04T02:30:00+11:00",
     (2026, 4, 5), "45 1", "2026-04-05T01:45:00+11:00"),
    ("Europe/Dublin", (2026, 3, 29), "30 1", "2026-03-29T02:00:00+01:00",
     (2026, 10, 25), "30 1", "2026-10-25T01:30:00+01:00"),
    ("America/Havana", (2026, 3, 8), "0 0", "2026-03-08T01:00:00-04:00",
     (2026, 11, 1), "30 0", "2026-11-01T00:30:00-04:00"),
    ("America/Santiago", (2026, 9, 6), "0 0", "2026-09-06T01:00:00-03:00",
     (2026, 4, 4), "30 23", "2026-04-04T23:30:00-03:00"),
    ("Asia/Beirut", (2026, 3, 29), "0 0", "2026-03-29T01:00:00+03:00",
     (2026, 10, 24), "30 23", "2026-10-24T23:30:00+03:00"),
    ("Australia/Sydney", (2026, 10, 4), "30 2", "2026-10-04T03:00:00+11:00",
     (2026, 4, 5), "30 2", "2026-04-05T02:30:00+11:00"),
    ("Africa/Casablanca", (2026, 3, 22), "30 2", "2026-03-22T03:00:00+01:00",
     (2026, 2, 15), "30 2", "2026-02-15T02:30:00+01:00"),
    ("Pacific/Chatham", (2026, 9, 27), "0 3", "2026-09-27T03:45:00+13:45",
     (2026, 4, 5), "0 3", "2026-04-05T03:00:00+13:45"),
]  # fmt: skip


@pytest.mark.parametrize(("zone", "day", "time", "runs_at"), [z[:4] for z in ZONES])
def test_a_fixed_time_in_the_spring_gap_runs_at_the_first_instant_after(
    zone: str, day: tuple[int, int, int], time: str, runs_at: str
) -> None:
    schedule = parse(f"{time} * * *", zone)
    day_before = at(zone, *day) - timedelta(days=1)
    slot, note = schedule.next_with_note(day_before + timedelta(hours=12))
    assert slot.isoformat() == runs_at
    assert note is not None and note.startswith("shifted: ")
    # The next day it is back at its own time, and prev finds the shifted slot again.
    following = schedule.next(slot)
    assert following.astimezone(UTC) - slot.astimezone(UTC) < timedelta(days=1)
    assert schedule.prev(following) == slot


@pytest.mark.parametrize(("zone", "day", "time", "first"), [(z[0], *z[4:]) for z in ZONES])
def test_a_fixed_time_in_a_repeated_hour_runs_once_at_the_first_occurrence(
    zone: str, day: tuple[int, int, int], time: str, first: str
) -> None:
    schedule = parse(f"{time} * * *", zone)
    got = [s.isoformat() for s in islice(schedule.iter(at(zone, *day)), 2)]
    assert got[0] == first
    assert got[1][:10] != got[0][:10]  # the second copy does not run
    slot = datetime.fromisoformat(first)
    assert slot.fold == 0
    _, note = schedule.next_with_note(slot - timedelta(minutes=1))
    assert note is not None and note.startswith("repeated hour: runs once")


@pytest.mark.parametrize(
    ("expr", "zone", "last_second", "runs_at"),
    [
        ("0 2 * * *", "Europe/Amsterdam", (2024, 3, 31, 1, 59, 59), "2024-03-31T03:00:00+02:00"),
        ("0 0 * * *", "America/Havana", (2026, 3, 7, 23, 59, 59), "2026-03-08T01:00:00-04:00"),
    ],
)
def test_a_skipped_fixed_time_is_next_from_the_last_second_before_the_jump(
    expr: str, zone: str, last_second: tuple[int, ...], runs_at: str
) -> None:
    assert parse(expr, zone).next(at(zone, *last_second)).isoformat() == runs_at


def test_every_15_minutes_keeps_its_spacing_through_the_repeated_hour() -> None:
    after = at("America/New_York", 2026, 11, 1, 0, 50)
    got = list(islice(parse("*/15 * * * *", "America/New_York").iter(after), 10))
    assert [g.isoformat()[11:] for g in got] == [
        "01:00:00-04:00", "01:15:00-04:00", "01:30:00-04:00", "01:45:00-04:00",
        "01:00:00-05:00", "01:15:00-05:00", "01:30:00-05:00", "01:45:00-05:00",
        "02:00:00-05:00", "02:15:00-05:00",
    ]  # fmt: skip
    assert real_gaps(got) == {timedelta(minutes=15)}
    assert [g.fold for g in got[4:8]] == [1, 1, 1, 1]


def test_every_15_minutes_skips_the_times_that_do_not_exist() -> None:
    after = at("Europe/Amsterdam", 2026, 3, 29, 1, 30)
    got = list(islice(parse("*/15 * * * *", "Europe/Amsterdam").iter(after), 3))
    assert [g.isoformat() for g in got] == [
        "2026-03-29T01:45:00+01:00",
        "2026-03-29T03:00:00+02:00",
        "2026-03-29T03:15:00+02:00",
    ]
    assert real_gaps(got) == {timedelta(minutes=15)}


def test_an_hourly_schedule_runs_in_both_copies_of_the_repeated_hour() -> None:
    after = at("America/New_York", 2026, 11, 1, 0, 30)
    assert run("0 * * * *", "America/New_York", after, 3) == [
        "2026-11-01T01:00:00-04:00",
        "2026-11-01T01:00:00-05:00",
        "2026-11-01T02:00:00-05:00",
    ]


def test_an_hourly_schedule_skips_the_missing_hour() -> None:
    after = at("America/New_York", 2026, 3, 8, 0, 30)
    assert run("0 * * * *", "America/New_York", after, 3) == [
        "2026-03-08T01:00:00-05:00",
        "2026-03-08T03:00:00-04:00",
        "2026-03-08T04:00:00-04:00",
    ]


def test_two_fixed_times_in_one_gap_run_once_together() -> None:
    after = at("Europe/Amsterdam", 2026, 3, 29, 1, 0)
    assert run("0,30 2,3 * * *", "Europe/Amsterdam", after, 3) == [
        "2026-03-29T03:00:00+02:00",  # 02:00, 02:30 and 03:00 itself
        "2026-03-29T03:30:00+02:00",
        "2026-03-30T02:00:00+02:00",
    ]


def test_a_half_hour_shift_keeps_spacing_in_lord_howe() -> None:
    after = at("Australia/Lord_Howe", 2026, 4, 5, 1, 20)
    got = list(islice(parse("*/15 * * * *", "Australia/Lord_Howe").iter(after), 5))
    assert [g.isoformat()[11:] for g in got] == [
        "01:30:00+11:00", "01:45:00+11:00", "01:30:00+10:30", "01:45:00+10:30", "02:00:00+10:30",
    ]  # fmt: skip
    assert real_gaps(got) == {timedelta(minutes=15)}


def test_a_midnight_jump_shifts_a_daily_job_to_one_in_the_morning() -> None:
    after = at("America/Havana", 2026, 3, 7, 12)
    assert run("@daily", "America/Havana", after, 2) == [
        "2026-03-08T01:00:00-04:00",
        "2026-03-09T00:00:00-04:00",
    ]


def test_a_midnight_repeat_belongs_to_the_day_before() -> None:
    # Beirut: at 24:00 on 2026-10-24 clocks go back to 23:00 of the same day.
    after = at("Asia/Beirut", 2026, 10, 24, 22, 50)
    assert run("*/20 * * * *", "Asia/Beirut", after, 7) == [
        "2026-10-24T23:00:00+03:00",
        "2026-10-24T23:20:00+03:00",
        "2026-10-24T23:40:00+03:00",
        "2026-10-24T23:00:00+02:00",
        "2026-10-24T23:20:00+02:00",
        "2026-10-24T23:40:00+02:00",
        "2026-10-25T00:00:00+02:00",
    ]


@pytest.mark.parametrize(
    ("expr", "zone", "before", "expected"),
    [
        # Backwards through a repeated hour: second copies first, then first copies.
        ("*/30 * * * *", "America/New_York", (2026, 11, 1, 2, 10),
         ["2026-11-01T02:00:00-05:00", "2026-11-01T01:30:00-05:00", "2026-11-01T01:00:00-05:00",
          "2026-11-01T01:30:00-04:00", "2026-11-01T01:00:00-04:00", "2026-11-01T00:30:00-04:00"]),
        # A fixed time in a repeat is found once going backwards too.
        ("30 1 * * *", "America/New_York", (2026, 11, 2, 0, 0),
         ["2026-11-01T01:30:00-04:00", "2026-10-31T01:30:00-04:00"]),
        # And a fixed time in a gap is found at the end of the gap.
        ("30 2 * * *", "Europe/Amsterdam", (2026, 3, 30, 0, 0),
         ["2026-03-29T03:00:00+02:00", "2026-03-28T02:30:00+01:00"]),
        ("*/30 * * * *", "Europe/Amsterdam", (2026, 3, 29, 3, 10),
         ["2026-03-29T03:00:00+02:00", "2026-03-29T01:30:00+01:00"]),
    ],
)  # fmt: skip
def test_prev_mirrors_next_across_changes(
    expr: str, zone: str, before: tuple[int, ...], expected: list[str]
) -> None:
    assert back(expr, zone, at(zone, *before), len(expected)) == expected


def test_prev_from_inside_the_second_copy_finds_the_earlier_first_copy() -> None:
    # 01:20 EST comes after 01:30 EDT: a fixed 01:30 has already run.
    inside = at("America/New_York", 2026, 11, 1, 1, 20, fold=1)
    schedule = parse("30 1 * * *", "America/New_York")
    assert schedule.prev(inside).isoformat() == "2026-11-01T01:30:00-04:00"
    assert schedule.next(inside).isoformat() == "2026-11-02T01:30:00-05:00"


def test_next_from_inside_the_first_copy_revisits_the_second() -> None:
    inside = at("America/New_York", 2026, 11, 1, 1, 50, fold=0)
    schedule = parse("10 * * * *", "America/New_York")
    assert schedule.next(inside).isoformat() == "2026-11-01T01:10:00-05:00"
    assert schedule.prev(at("America/New_York", 2026, 11, 1, 1, 5, fold=1)).isoformat() == (
        "2026-11-01T01:10:00-04:00"
    )


def test_an_imaginary_input_time_is_read_as_python_reads_it() -> None:
    # 02:30 does not exist on 2026-03-29 in Amsterdam; with fold=0 Python reads it with
    # the offset before the jump, i.e. as 03:30 CEST.
    imaginary = at("Europe/Amsterdam", 2026, 3, 29, 2, 30)
    schedule = parse("*/15 * * * *", "Europe/Amsterdam")
    assert schedule.next(imaginary).isoformat() == "2026-03-29T03:45:00+02:00"


def test_seconds_fields_keep_their_spacing_when_they_are_intervals() -> None:
    after = at("America/New_York", 2026, 3, 8, 1, 59, 30)
    assert run("*/20 * * * * *", "America/New_York", after, 3) == [
        "2026-03-08T01:59:40-05:00",
        "2026-03-08T03:00:00-04:00",
        "2026-03-08T03:00:20-04:00",
    ]


def test_h_slash_n_counts_as_an_interval_for_dst() -> None:
    schedule = parse("H/30 * * * *", "America/New_York", job="poll")
    slot = schedule.next(at("America/New_York", 2026, 11, 1, 0, 59))
    again = schedule.next(schedule.next(slot))
    assert slot.fold == 0 and again.fold == 1
    assert again.minute == slot.minute


def test_a_zone_without_dst_has_no_notes() -> None:
    schedule = parse("30 2 * * *", "Asia/Tokyo")
    assert schedule.next_with_note(at("Asia/Tokyo", 2026, 3, 29))[1] is None
