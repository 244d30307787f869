"""``distcron next``: the next slots of an expression, one ISO-8601 line each."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from click.testing import CliRunner, Result

from distcron.cli import main

ISO_WITH_OFFSET = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$")


def run(*args: str) -> Result:
    return CliRunner().invoke(main, ["next", *args])


def test_prints_five_slots_by_default_in_utc() -> None:
    result = run("0 9 * * 1-5", "--after", "2026-01-01T00:00:00Z")
    assert result.exit_code == 0
    assert result.output.splitlines() == [
        "2026-01-01T09:00:00+00:00",
        "2026-01-02T09:00:00+00:00",
        "2026-01-05T09:00:00+00:00",
        "2026-01-06T09:00:00+00:00",
        "2026-01-07T09:00:00+00:00",
    ]


def test_count_and_zone_choose_how_many_and_where() -> None:
    result = run("30 2 * * *", "--tz", "Europe/Amsterdam", "--after", "2026-03-28T12:00", "-n", "2")
    assert result.exit_code == 0
    assert result.output.splitlines() == [
        "2026-03-29T03:00:00+02:00",
        "2026-03-30T02:30:00+02:00",
    ]


def test_an_after_without_offset_is_read_in_the_zone() -> None:
    local = run("0 * * * *", "--tz", "Asia/Tokyo", "--after", "2026-01-01T10:30", "-n", "1")
    assert local.output.strip() == "2026-01-01T11:00:00+09:00"
    with_offset = run("0 * * * *", "--tz", "Asia/Tokyo", "--after", "2026-01-01T10:30Z", "-n", "1")
    assert with_offset.output.strip() == "2026-01-01T20:00:00+09:00"


def test_after_defaults_to_now() -> None:
    before = datetime.now(UTC)
    result = run("* * * * *", "-n", "1")
    done = datetime.now(UTC)
    slot = datetime.fromisoformat(result.output.strip())
    assert before < slot <= done + timedelta(minutes=1)
    assert slot.second == 0


def test_the_job_name_seeds_picked_fields() -> None:
    a = run("? ? * * *", "--job", "backup", "--after", "2026-01-01T00:00Z", "-n", "3")
    b = run("? ? * * *", "--job", "backup", "--after", "2026-01-01T00:00Z", "-n", "3")
    c = run("? ? * * *", "--job", "report", "--after", "2026-01-01T00:00Z", "-n", "3")
    assert a.output == b.output
    assert a.output != c.output


def test_an_unquoted_expression_is_joined_back() -> None:
    quoted = run("0 9 * * 1-5", "--after", "2026-01-01T00:00Z")
    split = run("0", "9", "*", "*", "1-5", "--after", "2026-01-01T00:00Z")
    assert quoted.output == split.output


def test_explain_describes_first_and_notes_dst_shifts() -> None:
    result = run(
        "30 2 * * *", "--tz", "Europe/Amsterdam", "--after", "2026-03-28T00:00", "-n", "2",
        "--explain",
    )  # fmt: skip
    assert result.exit_code == 0
    assert result.output.splitlines() == [
        "at 02:30 every day, Europe/Amsterdam",
        "2026-03-28T02:30:00+01:00",
        "2026-03-29T03:00:00+02:00  (shifted: 02:30 does not exist on 2026-03-29)",
    ]


def test_explain_notes_a_repeated_hour() -> None:
    result = run(
        "30 1 * * *", "--tz", "America/New_York", "--after", "2026-11-01T00:00", "-n", "2",
        "--explain",
    )  # fmt: skip
    assert result.output.splitlines()[1:] == [
        "2026-11-01T01:30:00-04:00  (repeated hour: runs once, at the first 01:30)",
        "2026-11-02T01:30:00-05:00",
    ]


def test_a_bad_expression_exits_2_naming_the_field() -> None:
    result = run("0 9 * * MON-FRU")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "bad day-of-week" in result.stderr
    assert 'unknown name "FRU"' in result.stderr
    assert "              ^" in result.stderr


def test_an_unknown_zone_exits_2_naming_the_zone() -> None:
    result = run("0 9 * * *", "--tz", "Mars/Olympus_Mons")
    assert result.exit_code == 2
    assert "Mars/Olympus_Mons" in result.stderr


def test_a_bad_after_exits_2() -> None:
    result = run("0 9 * * *", "--after", "yesterday")
    assert result.exit_code == 2
    assert "--after" in result.stderr


def test_a_schedule_that_runs_out_stops_with_an_error() -> None:
    result = run("0 0 1 1 *", "--after", "9998-06-01T00:00Z", "-n", "3")
    assert result.exit_code == 1
    assert result.stdout.splitlines() == ["9999-01-01T00:00:00+00:00"]
    assert "no more slots" in result.stderr


def test_the_installed_command_prints_slots_and_fails_with_status_2() -> None:
    distcron = Path(sys.executable).parent / "distcron"
    ok = subprocess.run(
        [str(distcron), "next", "*/20 * * * *", "--tz", "Europe/Amsterdam",
         "--after", "2026-03-29T01:30:00+01:00", "--count", "3"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert ok.returncode == 0
    assert ok.stdout.splitlines() == [
        "2026-03-29T01:40:00+01:00",
        "2026-03-29T03:00:00+02:00",
        "2026-03-29T03:20:00+02:00",
    ]
    assert all(ISO_WITH_OFFSET.match(line) for line in ok.stdout.splitlines())
    bad = subprocess.run(
        [str(distcron), "next", "0 9 * 13 *"], capture_output=True, text=True, check=False
    )
    assert bad.returncode == 2
    assert "bad month" in bad.stderr
    assert bad.stdout == ""
