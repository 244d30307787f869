"""Schedules are immutable, hashable values, compiled once per distinct input."""

from __future__ import annotations

import pytest

from distcron.cron import Schedule, parse


def test_the_same_input_gives_the_same_object() -> None:
    assert parse("*/5 * * * *", "Europe/Amsterdam") is parse("*/5 * * * *", "Europe/Amsterdam")
    assert parse("? ? * * *", job="a") is parse("? ? * * *", job="a")


def test_schedules_are_equal_and_hash_alike_by_expression_zone_and_seed() -> None:
    a = parse("0 9 * * 1-5", "Europe/Amsterdam")
    assert a == parse("0 9 * * 1-5", "Europe/Amsterdam")
    assert a != parse("0 9 * * 1-5", "Europe/London")
    assert a != parse("0 9 * * 1-5 ", "Europe/Amsterdam")  # the text is the identity
    assert len({a, parse("0 9 * * 1-5", "Europe/Amsterdam"), parse("@daily")}) == 2


def test_schedules_cannot_be_changed() -> None:
    schedule = parse("0 9 * * *")
    with pytest.raises(AttributeError):
        schedule.expr = "0 10 * * *"
    with pytest.raises(AttributeError):
        schedule.anything = 1


def test_a_schedule_shows_its_expression_zone_and_job() -> None:
    schedule = parse("0 9 * * *", "Asia/Tokyo")
    assert (schedule.expr, schedule.tz, schedule.job) == ("0 9 * * *", "Asia/Tokyo", None)
    assert repr(schedule) == "parse('0 9 * * *', tz='Asia/Tokyo')"
    assert repr(parse("H * * * *", job="j")) == "parse('H * * * *', tz='UTC', job='j')"
    assert str(schedule.zone) == "Asia/Tokyo"


def test_every_kind_of_schedule_is_a_schedule() -> None:
    assert isinstance(parse("0 9 * * *"), Schedule)
    assert isinstance(parse("@every 5m"), Schedule)
