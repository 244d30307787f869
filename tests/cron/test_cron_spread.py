"""Spread: ``?`` and ``H`` pick values from the job's name, the same on every replica."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from itertools import islice

import pytest

from distcron.cron import parse
from tests.cron.cron_helpers import at

NEW_YEAR = at("UTC", 2026, 1, 1)
NAMES = [f"job-{i}" for i in range(10_000)]


def first_slot(expr: str, job: str | None) -> tuple[int, int, int]:
    slot = parse(expr, "UTC", job).next(NEW_YEAR)
    return slot.day, slot.hour, slot.minute


def test_the_same_name_picks_the_same_time_in_a_fresh_process() -> None:
    jobs = ["backup", "report", "sync-eu", "x"]
    mine = [parse("? ? ? * *", job=j).next(NEW_YEAR).isoformat() for j in jobs]
    program = (
        "import json, sys\n"
        "from datetime import datetime, UTC\n"
        "from distcron.cron import parse\n"
        "after = datetime(2026, 1, 1, tzinfo=UTC)\n"
        "print(json.dumps([parse('? ? ? * *', job=j).next(after).isoformat() "
        "for j in sys.argv[1:]]))\n"
    )
    for seed in ("1", "2"):  # a different str hash salt in each process
        out = subprocess.run(
            [sys.executable, "-c", program, *jobs],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": seed, "PATH": ""},
        )
        assert json.loads(out.stdout) == mine


def test_different_names_pick_different_times() -> None:
    picked = {first_slot("? ? * * *", name) for name in NAMES[:200]}
    assert len(picked) > 150


def test_a_bare_h_is_the_same_as_a_question_mark() -> None:
    assert first_slot("H H * * *", "backup") == first_slot("? ? * * *", "backup")


def test_fields_are_picked_independently() -> None:
    # If minute and hour came from one number, (minute, hour) pairs would repeat every
    # lcm(60, 24) = 120 values; independent picks fill nearly all 1,440 minutes of a day.
    pairs = {first_slot("? ? * * *", name)[1:] for name in NAMES}
    assert len(pairs) > 1400


def test_ten_thousand_jobs_spread_evenly_over_the_day() -> None:
    per_minute = Counter(first_slot("? ? * * *", name)[1:] for name in NAMES)
    mean = len(NAMES) / 1440
    assert max(per_minute.values()) <= 3 * mean


def test_a_picked_day_of_month_is_one_every_month_has() -> None:
    days = Counter(first_slot("0 0 ? * *", name)[0] for name in NAMES[:3000])
    assert set(days) == set(range(1, 29))


def test_h_with_a_range_picks_inside_it() -> None:
    for name in NAMES[:300]:
        _, hour, minute = first_slot("H(10-14) H(2-5) * * *", name)
        assert 2 <= hour <= 5
        assert 10 <= minute <= 14


def test_h_with_a_step_repeats_from_a_picked_offset() -> None:
    offsets = set()
    just_before = at("UTC", 2025, 12, 31, 23, 59, 59)
    for name in NAMES[:300]:
        minutes = [s.minute for s in islice(parse("H/15 * * * *", job=name).iter(just_before), 4)]
        first = minutes[0]
        assert minutes == [first, first + 15, first + 30, first + 45]
        offsets.add(first)
    assert offsets == set(range(15))


def test_h_in_a_range_with_a_step_stays_in_the_range() -> None:
    for name in NAMES[:200]:
        schedule = parse("H(0-29)/10 0 * * *", job=name)
        slots = [schedule.next(at("UTC", 2026, 1, 1, 0, m)) for m in (0, 10, 20)]
        assert all(s.hour == 0 and s.minute < 30 for s in slots)


def test_the_job_name_does_not_matter_without_spread_fields() -> None:
    assert parse("0 9 * * thu", job="a") is parse("0 9 * * thu", job="b")
    assert parse("0 9 * * thu", job="a").job is None


def test_without_a_job_the_expression_itself_is_the_seed() -> None:
    for expr in ("? ? * * *", "H H H * *", "H/7 * * * *"):
        assert parse(expr).next(NEW_YEAR) == parse(expr, job=expr).next(NEW_YEAR)
        assert parse(expr).job is None


@pytest.mark.parametrize("expr", ["? ? * * *", "H H(0-5) * * 1-5", "H/10 * * * *"])
def test_spread_schedules_remember_their_job(expr: str) -> None:
    assert parse(expr, job="nightly").job == "nightly"
    assert parse(expr, job="nightly") != parse(expr, job="weekly")
