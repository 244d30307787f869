"""next, prev and iter: strictly after/before, aware in and aware out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from itertools import islice, pairwise
from zoneinfo import ZoneInfo

import pytest

from distcron.cron import NoSlotError, parse
from tests.cron.cron_helpers import at


def test_next_is_strictly_after_a_slot() -> None:
    schedule = parse("0 9 * * *")
    assert schedule.next(at("UTC", 2026, 1, 1, 9)) == at("UTC", 2026, 1, 2, 9)


def test_prev_is_strictly_before_a_slot() -> None:
    schedule = parse("0 9 * * *")
    assert schedule.prev(at("UTC", 2026, 1, 2, 9)) == at("UTC", 2026, 1, 1, 9)


def test_a_fraction_of_a_second_past_a_slot_counts_as_after_it() -> None:
    schedule = parse("0 9 * * *")
    slot = at("UTC", 2026, 1, 1, 9)
    assert schedule.next(slot + timedelta(microseconds=1)) == at("UTC", 2026, 1, 2, 9)
    assert schedule.prev(slot + timedelta(microseconds=1)) == slot
    assert schedule.next(slot - timedelta(microseconds=1)) == slot


def test_results_are_in_the_schedules_zone_whatever_the_input_zone() -> None:
    schedule = parse("0 9 * * *", "Asia/Tokyo")
    got = schedule.next(datetime(2025, 12, 31, 23, 0, tzinfo=UTC))
    assert got == datetime(2026, 1, 1, 9, tzinfo=ZoneInfo("Asia/Tokyo"))
    assert got.tzinfo == ZoneInfo("Asia/Tokyo")
    assert got.isoformat() == "2026-01-01T09:00:00+09:00"
    fixed_offset = datetime(2026, 1, 1, 8, 59, tzinfo=timezone(timedelta(hours=9)))
    assert schedule.next(fixed_offset) == got


def test_a_naive_datetime_is_refused() -> None:
    schedule = parse("0 9 * * *")
    with pytest.raises(ValueError, match="naive"):
        schedule.next(datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="naive"):
        schedule.prev(datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="naive"):
        parse("@every 5m").next(datetime(2026, 1, 1))


def test_iter_is_lazy_and_strictly_increasing() -> None:
    got = list(islice(parse("*/20 * * * *").iter(at("UTC", 2026, 1, 1)), 4))
    assert [g.minute for g in got] == [20, 40, 0, 20]
    assert all(a < b for a, b in pairwise(got))


def test_a_leap_day_schedule_leaps_over_2100() -> None:
    schedule = parse("0 0 29 2 *")
    assert schedule.next(at("UTC", 2096, 3, 1)) == at("UTC", 2104, 2, 29)
    assert schedule.prev(at("UTC", 2104, 2, 1)) == at("UTC", 2096, 2, 29)


def test_next_past_the_year_9999_raises_a_clear_error() -> None:
    schedule = parse("0 0 1 1 *")
    assert schedule.next(at("UTC", 9998, 6, 1)) == at("UTC", 9999, 1, 1)
    with pytest.raises(NoSlotError, match="10000"):
        schedule.next(at("UTC", 9999, 1, 1))


def test_prev_before_the_year_1_raises_a_clear_error() -> None:
    with pytest.raises(NoSlotError):
        parse("0 0 2 1 *").prev(at("UTC", 1, 1, 2))


def test_iter_ends_at_the_year_9999() -> None:
    assert list(parse("0 0 1 1 *").iter(at("UTC", 9997, 6, 1))) == [
        at("UTC", 9998, 1, 1),
        at("UTC", 9999, 1, 1),
    ]


def test_every_next_and_prev_are_multiples_of_the_interval_since_the_epoch() -> None:
    schedule = parse("@every 1h30m", "Europe/Amsterdam")
    after = at("UTC", 2026, 3, 29, 0, 10)
    nxt = schedule.next(after)
    assert nxt == at("UTC", 2026, 3, 29, 1, 30)
    assert nxt.isoformat() == "2026-03-29T03:30:00+02:00"
    assert schedule.prev(nxt) == at("UTC", 2026, 3, 29, 0, 0)
    assert schedule.prev(nxt + timedelta(microseconds=1)) == nxt


def test_six_field_schedules_step_through_seconds() -> None:
    got = list(islice(parse("*/20 * * * * *").iter(at("UTC", 2026, 1, 1)), 4))
    assert [g.second for g in got] == [20, 40, 0, 20]
    assert parse("*/20 * * * * *").prev(at("UTC", 2026, 1, 1)) == at(
        "UTC", 2025, 12, 31, 23, 59, 40
    )
