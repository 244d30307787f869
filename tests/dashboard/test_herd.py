"""The herd: per-minute launch counts over 24 hours, against a slot-by-slot count of
the cron engine's own ``next``, and its bounds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from distcron.api.dashboard import herd
from distcron.cron import Schedule, parse

NOW = datetime(2026, 3, 28, 22, 17, 31, tzinfo=UTC)  # the night before Europe's DST change

EXPRESSIONS = ["H * * * *", "*/7 * * * *", "*/5 * * * *", "0 3 * * *", "30 2 * * *",
               "H/20 8-18 * * 1-5", "0 0 1 1 *", "15,45 */2 * * *", "0 12 * * 0",
               "* 9 * * *", "H H * * *", "*/10 * 1 * *"]
ZONES = ["UTC", "Europe/Amsterdam", "America/New_York", "Asia/Kolkata"]


def _reference(schedules: list[tuple[str, Schedule]], start: datetime) -> list[int]:
    counts = [0] * herd.MINUTES
    for _, schedule in schedules:
        slot = schedule.next(start - timedelta(microseconds=1))
        while slot < start + herd.WINDOW:
            counts[int((slot - start).total_seconds()) // 60] += 1
            slot = schedule.next(slot)
    return counts


jobs = st.lists(st.tuples(st.sampled_from(EXPRESSIONS), st.sampled_from(ZONES)),
                min_size=1, max_size=8)


@given(jobs)
def test_counts_match_a_slot_by_slot_count_and_the_hottest_are_named(
    chosen: list[tuple[str, str]],
) -> None:
    schedules = [(f"job-{n}", parse(expr, tz=zone, job=f"job-{n}"))
                 for n, (expr, zone) in enumerate(chosen)]
    result = herd.compute(schedules, NOW)
    assert result.start == datetime(2026, 3, 28, 22, 18, tzinfo=UTC)
    assert list(result.per_minute) == _reference(schedules, result.start)
    assert result.counted_jobs == len(schedules) and not result.steady
    assert [h.launches for h in result.hottest] == sorted(
        (c for c in result.per_minute if c), reverse=True)[:herd.HOTTEST]
    for hot in result.hottest:
        assert sum(n for _, n in hot.jobs) == hot.launches  # few jobs: all named
        assert result.per_minute[int((hot.start - result.start).total_seconds()) // 60] \
            == hot.launches


def test_a_job_denser_than_once_a_minute_is_a_steady_load_not_counted() -> None:
    schedules = [("tick", parse("*/5 * * * * *", tz="UTC", job="tick")),
                 ("minutely", parse("* * * * *", tz="UTC", job="minutely")),
                 ("nightly", parse("0 3 * * *", tz="UTC", job="nightly"))]
    result = herd.compute(schedules, NOW)
    assert result.steady == (herd.Steady("tick", 12.0), herd.Steady("minutely", 1.0))
    assert result.total == 1 and result.counted_jobs == 1
    assert result.hottest[0].jobs == (("nightly", 1),)


def test_the_count_stops_at_its_bound_and_says_how_many_jobs_it_left_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    every_5 = [(f"j{n}", parse("*/5 * * * *", tz="UTC", job=f"j{n}")) for n in range(5)]
    assert herd.PER_JOB_CAP == 288  # so each job is just within its own bound
    monkeypatch.setattr(herd, "TOTAL_CAP", 2 * 288 + 100)
    result = herd.compute(every_5, NOW)
    assert (result.counted_jobs, result.uncounted_jobs) == (2, 3)
    assert result.steady == ()  # the third is left out for the bound, not taken as dense
    assert set(result.per_minute) == {0, 2} and result.total == 2 * 288
    assert len(result.hottest) == herd.HOTTEST


def test_many_hot_jobs_name_the_busiest_and_count_the_rest() -> None:
    crowd = [(f"c{n:02d}", parse("0 3 * * *", tz="UTC", job=f"c{n:02d}")) for n in range(20)]
    result = herd.compute(crowd, NOW)
    top = result.hottest[0]
    assert top.launches == 20 and len(top.jobs) == herd.NAMED_PER_MINUTE
    assert top.more_jobs == 20 - herd.NAMED_PER_MINUTE
    assert [job for job, _ in top.jobs] == [f"c{n:02d}" for n in range(herd.NAMED_PER_MINUTE)]
