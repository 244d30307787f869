"""describe(): one line of English, readable for common shapes and never wrong."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from distcron.cron import parse


@pytest.mark.parametrize(
    ("expr", "tz", "words"),
    [
        ("*/15 9-17 * * 1-5", "Europe/Amsterdam",
         "every 15 minutes, 09:00–17:59, Monday to Friday, Europe/Amsterdam"),
        ("0 8 L * *", "UTC", "at 08:00 on the last day of the month, UTC"),
        ("0 9 * * 1-5", "UTC", "at 09:00, Monday to Friday, UTC"),
        ("0 0 * * *", "UTC", "at 00:00 every day, UTC"),
        ("@daily", "UTC", "at 00:00 every day, UTC"),
        ("* * * * *", "UTC", "every minute, UTC"),
        ("*/5 * * * *", "UTC", "every 5 minutes, UTC"),
        ("0 * * * *", "UTC", "every hour at :00, UTC"),
        ("0 */2 * * *", "UTC", "every 2 hours at :00, UTC"),
        ("5,20,35,50 * * * *", "UTC", "every hour at :05, :20, :35 and :50, UTC"),
        ("*/7 * * * *", "UTC", "every hour at minutes 0, 7, 14, 21, 28, 35, 42, 49 and 56, UTC"),
        ("20 8-22/2 * 6-8 1,3,5", "UTC",
         "at :20 past every 2nd hour from 08:00 to 22:59 on Monday, Wednesday and Friday "
         "in June to August, UTC"),
        ("0 0 29 2 *", "UTC", "at 00:00 on 29 February (in leap years), UTC"),
        ("0 0 1 1 *", "UTC", "at 00:00 on 1 January, UTC"),
        ("0 0 13 * 5", "UTC", "at 00:00 on day 13 of the month or on Friday, UTC"),
        ("0 0 */2 * 5", "UTC",
         "at 00:00 on every 2nd day from the 1st of the month, if that day is Friday, UTC"),
        ("0 12 15W * *", "UTC", "at 12:00 on the weekday nearest the 15th of the month, UTC"),
        ("0 0 LW * *", "UTC", "at 00:00 on the last weekday (Monday–Friday) of the month, UTC"),
        ("0 0 L-2 * *", "UTC", "at 00:00 on the 3rd-to-last day of the month, UTC"),
        ("0 0 1,15,L * *", "UTC", "at 00:00 on days 1 and 15 and the last day of the month, UTC"),
        ("0 0 * * 5#2", "UTC", "at 00:00 on the 2nd Friday of the month, UTC"),
        ("0 0 * * 5L", "UTC", "at 00:00 on the last Friday of the month, UTC"),
        ("0 0 * * 0,6", "UTC", "at 00:00 on Saturday and Sunday, UTC"),
        ("0 9-11,14-16 * * *", "UTC",
         "at 09:00, 10:00, 11:00, 14:00, 15:00 and 16:00 every day, UTC"),
        ("*/10 * * * * *", "UTC", "every 10 seconds, UTC"),
        ("30 */10 * * * *", "UTC", "at second 30, every 10 minutes, UTC"),
        ("@every 90s", "Europe/Paris",
         "every 1m30s, counted from the Unix epoch (1970-01-01 00:00 UTC), Europe/Paris"),
    ],
)  # fmt: skip
def test_common_shapes_read_naturally(expr: str, tz: str, words: str) -> None:
    assert parse(expr, tz).describe() == words


def test_picked_values_are_shown_with_where_they_came_from() -> None:
    text = parse("? ? * * *", job="backup").describe()
    assert text.startswith("at ")
    assert text.endswith(' every day (? and H picked from job "backup"), UTC')
    assert "the expression text" in parse("H H * * *").describe()


def test_picked_values_are_the_ones_that_fire() -> None:
    schedule = parse("? ? * * *", job="backup")
    slot = schedule.next(datetime(2026, 1, 1, tzinfo=UTC))
    assert f"at {slot.hour:02}:{slot.minute:02} " in schedule.describe()
