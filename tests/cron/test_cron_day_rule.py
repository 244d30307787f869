"""Day-of-month and day-of-week combine as in Vixie cron and cronie: when both are
restricted and neither starts with "*", a day matching either fires (OR); otherwise
both must match (AND)."""

from __future__ import annotations

from itertools import islice

from distcron.cron import parse
from tests.cron.cron_helpers import at, slots

NEW_YEAR = at("UTC", 2026, 1, 1)  # a Thursday


def test_both_fields_restricted_means_either_day_fires() -> None:
    assert slots("0 0 13 * 5", NEW_YEAR, 4) == [
        "2026-01-02T00:00:00+00:00",  # Friday
        "2026-01-09T00:00:00+00:00",  # Friday
        "2026-01-13T00:00:00+00:00",  # the 13th, a Tuesday
        "2026-01-16T00:00:00+00:00",  # Friday
    ]


def test_a_star_day_of_month_leaves_only_the_weekday() -> None:
    assert slots("0 0 * * 5", NEW_YEAR, 2) == [
        "2026-01-02T00:00:00+00:00",
        "2026-01-09T00:00:00+00:00",
    ]


def test_a_star_weekday_leaves_only_the_day_of_month() -> None:
    assert slots("0 0 13 * *", NEW_YEAR, 2) == [
        "2026-01-13T00:00:00+00:00",
        "2026-02-13T00:00:00+00:00",
    ]


def test_a_stepped_star_day_of_month_still_counts_as_a_star() -> None:
    # "*/2" starts with "*": AND, so odd days that are Fridays (croniter would OR here).
    assert slots("0 0 */2 * 5", NEW_YEAR, 3) == [
        "2026-01-09T00:00:00+00:00",
        "2026-01-23T00:00:00+00:00",
        "2026-02-13T00:00:00+00:00",
    ]


def test_a_stepped_star_weekday_still_counts_as_a_star() -> None:
    # Days 10 that fall on Sunday, Wednesday or Saturday.
    assert slots("0 0 10 * */3", NEW_YEAR, 2) == [
        "2026-01-10T00:00:00+00:00",  # Saturday
        "2026-05-10T00:00:00+00:00",  # Sunday
    ]


def test_a_full_range_that_is_not_a_star_ors_with_the_weekday() -> None:
    # "1-31" does not start with "*": OR, so every day fires.
    assert slots("0 0 1-31 * 5", NEW_YEAR, 2) == [
        "2026-01-02T00:00:00+00:00",
        "2026-01-03T00:00:00+00:00",
    ]


def test_a_picked_day_of_month_ors_with_a_weekday_unlike_quartz() -> None:
    # In Quartz "?" means "no specific value"; in distcron it is a picked day (1–28),
    # so with a weekday the two OR together. Use "*" for "any day-of-month".
    picked = parse("0 0 ? * *", job="report").next(NEW_YEAR).day
    days = {s.day for s in islice(parse("0 0 ? * 1", job="report").iter(NEW_YEAR), 6)}
    assert {5, 12, 19, 26} <= days  # the Mondays of January 2026
    assert picked in days
