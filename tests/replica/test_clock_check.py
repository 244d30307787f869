"""Comparing a replica's clock with the others' (issue 13.7): the median rule,
samples delayed by a store pause, replicas not heard yet, and the setting."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from distcron.errors import ConfigError
from distcron.replica.clocks import (
    FIRST_HEARING,
    STALE_AFTER,
    ClockCheck,
    published_wall,
    skew_from,
)
from distcron.replica.config import build_config

BOUND = 2.0
T0 = datetime(2026, 12, 3, 6, 0, tzinfo=UTC)


class SteppedClock:
    """Wall and monotonic time that a test moves by hand."""

    def __init__(self) -> None:
        self.at = T0
        self.mono = 100.0

    def now(self) -> datetime:
        return self.at

    def monotonic(self) -> float:
        return self.mono

    async def sleep(self, seconds: float) -> None:
        raise AssertionError("not used")

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)
        self.mono += seconds


def skews(clocks: list[float]) -> list[float]:
    """Each replica's skew, given every replica's clock reading at one instant."""
    return [skew_from(other - own for j, other in enumerate(clocks) if j != i)
            for i, own in enumerate(clocks)]


@given(agreeing=st.lists(st.floats(-0.25, 0.25), min_size=2, max_size=6),
       outliers=st.lists(st.floats(-100, 100), max_size=5), base=st.floats(-1e6, 1e6))
def test_a_majority_of_agreeing_clocks_is_never_skewed_and_outvotes_any_far_clock(
        agreeing: list[float], outliers: list[float], base: float) -> None:
    outliers = outliers[:len(agreeing) - 1]  # the agreeing clocks are a strict majority
    clocks = [base + a for a in agreeing] + [base + o for o in outliers]
    found = skews(clocks)
    # The median lies among the agreeing clocks, within 0.25 s of each of them… both ways.
    assert all(abs(s) <= 0.5 + 1e-6 for s in found[:len(agreeing)])
    for outlier, skew in zip(outliers, found[len(agreeing):], strict=True):
        if abs(outlier) > BOUND + 0.25 + 1e-6:
            assert abs(skew) > BOUND


def test_when_the_clocks_split_evenly_the_replica_found_right_before_stays_fit() -> None:
    clock = SteppedClock()
    right, fast = ClockCheck("r1", BOUND, clock), ClockCheck("r2", BOUND, clock)
    for _ in range(2):
        heard_from(right, clock, "r0", 0.0)
        heard_from(right, clock, "r2", 30.0)
        heard_from(fast, clock, "r0", -30.0)
        heard_from(fast, clock, "r1", -30.0)
        clock.advance(1)
    assert right.verdict({"r0", "r1", "r2"}).problem is None
    assert fast.verdict({"r0", "r1", "r2"}).problem is not None
    # r0 dies: one clock against one.
    assert right.verdict({"r1", "r2"}).problem is None
    split = fast.verdict({"r1", "r2"})
    assert split.skew == pytest.approx(15.0)
    assert split.problem is not None and "split evenly" in split.problem


def test_two_fresh_replicas_thirty_seconds_apart_both_wait_for_a_clear_verdict() -> None:
    clock = SteppedClock()
    first, second = ClockCheck("r1", BOUND, clock), ClockCheck("r2", BOUND, clock)
    heard_from(first, clock, "r2", 30.0)
    heard_from(second, clock, "r1", -30.0)
    assert first.verdict({"r1", "r2"}).problem is not None
    assert second.verdict({"r1", "r2"}).problem is not None


def test_one_fast_replica_of_three_is_the_only_one_skewed() -> None:
    assert skews([0.0, 0.1, 30.0]) == [pytest.approx(-0.1), pytest.approx(0.0),
                                       pytest.approx(29.9)]


def heard_from(check: ClockCheck, clock: SteppedClock, replica: str, ahead: float,
               delayed: float = 0.0) -> None:
    """``replica``, ``ahead`` seconds ahead of this clock, published; it arrived
    ``delayed`` seconds later."""
    check.heard(replica, clock.now().timestamp() - delayed + ahead)


def test_a_fast_clock_is_told_why_it_does_not_lead() -> None:
    clock = SteppedClock()
    check = ClockCheck("fast", BOUND, clock)
    for _ in range(3):
        heard_from(check, clock, "r1", -30.0)
        heard_from(check, clock, "r2", -30.1)
        clock.advance(1)
    verdict = check.verdict({"fast", "r1", "r2"})
    assert verdict.skew == pytest.approx(30.0)
    assert verdict.problem is not None and "30.0 s ahead of the median of 3" in verdict.problem


def test_deliveries_delayed_by_a_store_pause_do_not_make_a_clock_look_skewed() -> None:
    clock = SteppedClock()
    check = ClockCheck("r0", BOUND, clock)
    heard_from(check, clock, "r1", 0.0)
    heard_from(check, clock, "r2", 0.0)
    clock.advance(15)
    # What was written before the pause arrives after it, 15 s late.
    heard_from(check, clock, "r1", 0.0, delayed=15)
    heard_from(check, clock, "r2", 0.0, delayed=14)
    verdict = check.verdict({"r0", "r1", "r2"})
    assert verdict.problem is None
    assert verdict.skew == pytest.approx(0.0)


def test_a_replica_waits_to_hear_the_others_then_ignores_those_that_never_publish() -> None:
    clock = SteppedClock()
    check = ClockCheck("r0", BOUND, clock)
    waiting = check.verdict({"r0", "old"})
    assert waiting.problem == "waiting to hear the clocks of old"
    clock.advance(FIRST_HEARING + 0.1)
    assert check.verdict({"r0", "old"}).problem is None


def test_a_replica_that_stopped_publishing_no_longer_counts() -> None:
    clock = SteppedClock()
    check = ClockCheck("r0", BOUND, clock)
    heard_from(check, clock, "r1", 30.0)
    clock.advance(FIRST_HEARING)
    assert check.verdict({"r0", "r1"}).problem is not None
    clock.advance(STALE_AFTER)
    assert check.verdict({"r0", "r1"}) == check.verdict({"r0"})
    assert check.verdict({"r0", "r1"}).problem is None


def test_a_bound_of_zero_compares_nothing() -> None:
    clock = SteppedClock()
    check = ClockCheck("r0", 0.0, clock)
    heard_from(check, clock, "r1", 30.0)
    assert check.verdict({"r0", "r1", "r2"}).problem is None


def test_a_registration_without_a_wall_time_is_no_sample() -> None:
    assert published_wall(b'{"id": "r1", "wall": 1764741600.5}') == 1764741600.5
    assert published_wall(b'{"id": "r1"}') is None
    assert published_wall(b"r1") is None


def test_max_clock_skew_comes_from_the_file_the_environment_and_the_flag() -> None:
    assert build_config({}, {}, {}).max_clock_skew == 2.0
    assert build_config({"max_clock_skew": 1}, {}, {}).max_clock_skew == 1.0
    environ = {"DISTCRON_MAX_CLOCK_SKEW": "0.5"}
    assert build_config({"max_clock_skew": 1}, environ, {}).max_clock_skew == 0.5
    assert build_config({}, environ, {"max_clock_skew": 3.0}).max_clock_skew == 3.0
    with pytest.raises(ConfigError, match="max_clock_skew"):
        build_config({"max_clock_skew": -1}, {}, {})
