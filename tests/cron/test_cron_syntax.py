"""The expression language: fields, names, ranges, steps, lists and macros."""

from __future__ import annotations

import pytest

from distcron.cron import CronSyntaxError, parse
from tests.cron.cron_helpers import at, slots

NEW_YEAR = at("UTC", 2026, 1, 1)  # a Thursday


def test_five_fields_are_minute_hour_day_month_weekday() -> None:
    assert slots("30 14 2 3 *", NEW_YEAR, 2) == [
        "2026-03-02T14:30:00+00:00",
        "2027-03-02T14:30:00+00:00",
    ]


def test_six_fields_put_seconds_first() -> None:
    assert slots("15 30 14 * * *", NEW_YEAR, 2) == [
        "2026-01-01T14:30:15+00:00",
        "2026-01-02T14:30:15+00:00",
    ]


def test_a_star_step_counts_from_the_start_of_the_range() -> None:
    assert slots("*/15 0 * * *", NEW_YEAR, 4) == [
        "2026-01-01T00:15:00+00:00",
        "2026-01-01T00:30:00+00:00",
        "2026-01-01T00:45:00+00:00",
        "2026-01-02T00:00:00+00:00",
    ]


def test_a_value_with_a_step_runs_from_that_value_to_the_end_of_the_range() -> None:
    assert slots("5/15 0 * * *", NEW_YEAR, 4) == [
        "2026-01-01T00:05:00+00:00",
        "2026-01-01T00:20:00+00:00",
        "2026-01-01T00:35:00+00:00",
        "2026-01-01T00:50:00+00:00",
    ]


def test_a_stepped_range_stays_inside_the_range() -> None:
    assert slots("10-50/20 0 * * *", NEW_YEAR, 4)[:3] == [
        "2026-01-01T00:10:00+00:00",
        "2026-01-01T00:30:00+00:00",
        "2026-01-01T00:50:00+00:00",
    ]


def test_a_range_of_one_value_with_a_step_is_that_one_value() -> None:
    # cronsim reads "4-4/6" as "4/6" (4 and 10); Vixie cron and distcron read a range.
    assert slots("0 0 1 4-4/6 *", NEW_YEAR, 2) == [
        "2026-04-01T00:00:00+00:00",
        "2027-04-01T00:00:00+00:00",
    ]


def test_lists_mix_values_ranges_and_steps() -> None:
    assert slots("0 1,3-4,20/2 1 1 *", NEW_YEAR, 6) == [
        "2026-01-01T01:00:00+00:00",
        "2026-01-01T03:00:00+00:00",
        "2026-01-01T04:00:00+00:00",
        "2026-01-01T20:00:00+00:00",
        "2026-01-01T22:00:00+00:00",
        "2027-01-01T01:00:00+00:00",
    ]


@pytest.mark.parametrize("name", ["mon", "MON", "Mon", "mOn"])
def test_weekday_names_are_case_insensitive(name: str) -> None:
    assert slots(f"0 0 * * {name}", NEW_YEAR, 1) == ["2026-01-05T00:00:00+00:00"]


def test_month_names_work_in_ranges() -> None:
    assert slots("0 0 1 nov-DEC *", NEW_YEAR, 3) == [
        "2026-11-01T00:00:00+00:00",
        "2026-12-01T00:00:00+00:00",
        "2027-11-01T00:00:00+00:00",
    ]


def test_weekday_names_work_in_ranges() -> None:
    assert slots("0 0 * * MON-FRI", NEW_YEAR, 3) == [
        "2026-01-02T00:00:00+00:00",  # Friday
        "2026-01-05T00:00:00+00:00",  # Monday
        "2026-01-06T00:00:00+00:00",
    ]


@pytest.mark.parametrize("sunday", ["0", "7", "sun"])
def test_sunday_is_0_and_7(sunday: str) -> None:
    assert slots(f"0 0 * * {sunday}", NEW_YEAR, 2) == [
        "2026-01-04T00:00:00+00:00",
        "2026-01-11T00:00:00+00:00",
    ]


def test_a_weekday_range_may_end_on_7() -> None:
    assert slots("0 0 * * 5-7", NEW_YEAR, 3) == [
        "2026-01-02T00:00:00+00:00",
        "2026-01-03T00:00:00+00:00",
        "2026-01-04T00:00:00+00:00",
    ]


@pytest.mark.parametrize(
    ("macro", "same_as"),
    [
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@monthly", "0 0 1 * *"),
        ("@weekly", "0 0 * * 0"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@hourly", "0 * * * *"),
        ("@HOURLY", "0 * * * *"),
    ],
)
def test_macros_mean_their_classic_expressions(macro: str, same_as: str) -> None:
    assert slots(macro, NEW_YEAR, 3) == slots(same_as, NEW_YEAR, 3)


def test_every_counts_intervals_from_the_unix_epoch() -> None:
    # 1h30m divides a day 16 times, so slots fall on 00:00, 01:30, ... every day.
    assert slots("@every 1h30m", at("UTC", 2026, 1, 1, 0, 10), 2) == [
        "2026-01-01T01:30:00+00:00",
        "2026-01-01T03:00:00+00:00",
    ]
    schedule = parse("@every 7m")
    slot = schedule.next(at("UTC", 2026, 1, 1))
    assert int(slot.timestamp()) % 420 == 0


def test_every_slots_are_the_same_instants_in_every_zone() -> None:
    after = at("UTC", 2026, 3, 29)
    in_utc = parse("@every 90s").next(after)
    in_amsterdam = parse("@every 90s", "Europe/Amsterdam").next(after)
    assert in_utc == in_amsterdam
    assert str(in_amsterdam.tzinfo) == "Europe/Amsterdam"


def test_every_needs_whole_seconds() -> None:
    with pytest.raises(CronSyntaxError, match="whole number of seconds"):
        parse("@every 250ms")


def test_reboot_is_refused_as_meaningless_in_a_distributed_cron() -> None:
    with pytest.raises(CronSyntaxError, match="@reboot is not supported"):
        parse("@reboot")


def test_blanks_around_and_between_fields_do_not_matter() -> None:
    assert slots("  0\t9  *  * \t*  ", NEW_YEAR, 1) == slots("0 9 * * *", NEW_YEAR, 1)


def test_a_star_inside_a_list_covers_the_whole_field() -> None:
    assert slots("0 0 * * 1,*", NEW_YEAR, 2) == slots("0 0 * * *", NEW_YEAR, 2)
