"""Quartz extensions: L, L-n, nW, LW in day-of-month; n#k and nL in day-of-week."""

from __future__ import annotations

from tests.cron.cron_helpers import at, slots

NEW_YEAR = at("UTC", 2026, 1, 1)


def test_l_is_the_last_day_of_each_month() -> None:
    assert slots("0 8 L * *", NEW_YEAR, 3) == [
        "2026-01-31T08:00:00+00:00",
        "2026-02-28T08:00:00+00:00",
        "2026-03-31T08:00:00+00:00",
    ]


def test_l_in_february_follows_leap_years() -> None:
    assert slots("0 0 L 2 *", NEW_YEAR, 3) == [
        "2026-02-28T00:00:00+00:00",
        "2027-02-28T00:00:00+00:00",
        "2028-02-29T00:00:00+00:00",
    ]


def test_l_minus_n_counts_back_from_the_last_day() -> None:
    assert slots("0 0 L-2 * *", NEW_YEAR, 3) == [
        "2026-01-29T00:00:00+00:00",
        "2026-02-26T00:00:00+00:00",
        "2026-03-29T00:00:00+00:00",
    ]


def test_l_minus_n_skips_months_too_short_for_it() -> None:
    # L-29 is the 2nd of a 31-day month, the 1st of a 30-day month, nothing in February.
    assert slots("0 0 L-29 1-4 *", NEW_YEAR, 4) == [
        "2026-01-02T00:00:00+00:00",
        "2026-03-02T00:00:00+00:00",
        "2026-04-01T00:00:00+00:00",
        "2027-01-02T00:00:00+00:00",
    ]


def test_w_is_the_nearest_weekday_within_the_month() -> None:
    # 2026-02-15 is a Sunday -> Monday 16th; 2026-03-15 a Sunday -> Monday 16th;
    # 2026-08-15 a Saturday -> Friday 14th.
    assert slots("0 0 15W 2,3,8 *", NEW_YEAR, 3) == [
        "2026-02-16T00:00:00+00:00",
        "2026-03-16T00:00:00+00:00",
        "2026-08-14T00:00:00+00:00",
    ]


def test_w_does_not_cross_into_another_month() -> None:
    # 2026-08-01 is a Saturday: the nearest weekday in August is Monday the 3rd.
    assert slots("0 0 1W 8 *", NEW_YEAR, 1) == ["2026-08-03T00:00:00+00:00"]
    # 2026-05-31 is a Sunday: the nearest weekday in May is Friday the 29th.
    assert slots("0 0 31W 5 *", NEW_YEAR, 1) == ["2026-05-29T00:00:00+00:00"]


def test_w_for_a_day_the_month_lacks_picks_nothing_that_month() -> None:
    assert slots("0 0 31W * *", NEW_YEAR, 3) == [
        "2026-01-30T00:00:00+00:00",  # the 31st is a Saturday
        "2026-03-31T00:00:00+00:00",
        "2026-05-29T00:00:00+00:00",  # no 31st in February or April
    ]


def test_lw_is_the_last_weekday_of_the_month() -> None:
    # 2026-01-31 Sat -> 30th; 2026-02-28 Sat -> 27th; 2026-05-31 Sun -> 29th.
    assert slots("0 0 LW 1,2,3,5 *", NEW_YEAR, 4) == [
        "2026-01-30T00:00:00+00:00",
        "2026-02-27T00:00:00+00:00",
        "2026-03-31T00:00:00+00:00",
        "2026-05-29T00:00:00+00:00",
    ]


def test_hash_picks_the_nth_weekday_of_the_month() -> None:
    assert slots("0 0 * * 5#2", NEW_YEAR, 3) == [
        "2026-01-09T00:00:00+00:00",
        "2026-02-13T00:00:00+00:00",
        "2026-03-13T00:00:00+00:00",
    ]


def test_a_fifth_weekday_fires_only_in_months_that_have_one() -> None:
    assert slots("0 0 * * fri#5", NEW_YEAR, 3) == [
        "2026-01-30T00:00:00+00:00",
        "2026-05-29T00:00:00+00:00",
        "2026-07-31T00:00:00+00:00",
    ]


def test_nl_is_the_last_such_weekday_of_the_month() -> None:
    expected = [
        "2026-01-30T00:00:00+00:00",
        "2026-02-27T00:00:00+00:00",
        "2026-03-27T00:00:00+00:00",
    ]
    assert slots("0 0 * * 5L", NEW_YEAR, 3) == expected


def test_sunday_as_7_works_with_hash_and_l() -> None:
    assert slots("0 0 * * 7#1", NEW_YEAR, 1) == slots("0 0 * * 0#1", NEW_YEAR, 1)
    assert slots("0 0 * * 7L", NEW_YEAR, 1) == ["2026-01-25T00:00:00+00:00"]


def test_specials_combine_with_plain_days_in_a_list() -> None:
    assert slots("0 0 1,15,L 2 *", NEW_YEAR, 3) == [
        "2026-02-01T00:00:00+00:00",
        "2026-02-15T00:00:00+00:00",
        "2026-02-28T00:00:00+00:00",
    ]


def test_quartz_days_of_month_or_with_weekdays_like_plain_ones() -> None:
    # Neither field starts with "*": a day matching either fires.
    assert slots("0 0 L * 1#1", NEW_YEAR, 3) == [
        "2026-01-05T00:00:00+00:00",  # first Monday
        "2026-01-31T00:00:00+00:00",  # last day
        "2026-02-02T00:00:00+00:00",
    ]
