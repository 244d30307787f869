"""The zone model: offsets and transitions found by probing equal zoneinfo's own;
"localtime" is refused everywhere."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from distcron.cli import main
from distcron.cron import UnknownTimeZoneError, parse
from distcron.cron.days import AND, DayRule, month_info
from distcron.cron.zone import SpecialDay, zone_rules
from distcron.jobs.spec import check_timezone

ZONES = [
    "Europe/Amsterdam",
    "America/New_York",
    "Australia/Lord_Howe",
    "Europe/Dublin",
    "America/Havana",
    "Asia/Beirut",
    "Africa/Casablanca",
    "Pacific/Chatham",
    "America/St_Johns",
    "Europe/Moscow",  # offset changes without DST (2011, 2014)
]


def hourly_changes(zone: str, year: int) -> list[tuple[datetime, int, int]]:
    tz = ZoneInfo(zone)
    out = []
    t = datetime(year, 1, 1, tzinfo=UTC)
    end = datetime(year + 1, 1, 1, tzinfo=UTC)
    while t < end:
        before = t.astimezone(tz).utcoffset()
        after = (t + timedelta(hours=1)).astimezone(tz).utcoffset()
        if before != after:
            s = t
            while s.astimezone(tz).utcoffset() == before:
                s += timedelta(seconds=60)
            assert before is not None and after is not None
            out.append((s, int(before.total_seconds()), int(after.total_seconds())))
        t += timedelta(hours=1)
    return out


@pytest.mark.parametrize("zone", ZONES)
@pytest.mark.parametrize("year", [1995, 2011, 2014, 2026, 2051])
def test_transitions_found_by_daily_probes_match_an_hourly_scan(zone: str, year: int) -> None:
    rules = zone_rules(zone)
    assert rules is not None
    expected = hourly_changes(zone, year)
    found = [
        (datetime.fromtimestamp(t.at, UTC), t.before, t.after) for t in rules.transitions_in(year)
    ]
    assert found == expected


@pytest.mark.parametrize("zone", ZONES)
def test_offsets_match_zoneinfo_on_both_sides_of_each_change(zone: str) -> None:
    rules = zone_rules(zone)
    assert rules is not None
    for at, before, after in hourly_changes(zone, 2026):
        t = int(at.timestamp())
        assert rules.offset_at(t - 1) == before
        assert rules.offset_at(t) == after


def test_ordinary_days_have_one_offset_and_change_days_are_special() -> None:
    rules = zone_rules("Europe/Amsterdam")
    assert rules is not None
    epoch = date(1970, 1, 1)
    assert rules.day((date(2026, 3, 28) - epoch).days) == 3600
    assert isinstance(rules.day((date(2026, 3, 29) - epoch).days), SpecialDay)
    assert rules.day((date(2026, 3, 30) - epoch).days) == 7200


def test_utc_needs_no_rules() -> None:
    assert zone_rules("UTC") is None
    assert zone_rules("Etc/UTC") is None


def test_each_month_starts_on_each_weekday_within_400_years() -> None:
    # DayRule.ever_matches relies on this: (month, length, first weekday) all occur.
    seen = set()
    for year in range(2000, 2400):
        for month in range(1, 13):
            _, ndays, first = month_info(year, month)
            seen.add((month, ndays, first))
    assert len(seen) == 12 * 7 + 7  # February twice: 28 and 29 days
    every_month = DayRule(0x1FFE, 0, (), 0, (), AND)
    assert {(m, n) for m, n, _ in seen} == set(every_month.month_lengths())


def test_localtime_is_refused_with_a_reason_because_replicas_would_disagree() -> None:
    with pytest.raises(UnknownTimeZoneError) as caught:
        parse("0 0 * * *", "localtime")
    error = caught.value
    assert (error.zone, error.field) == ("localtime", "time zone")
    assert "each machine's own setting, not a zone: name the zone" in error.reason


def test_localtime_gets_one_rule_in_the_engine_the_cli_and_a_jobs_file() -> None:
    result = CliRunner().invoke(main, ["next", "0 0 * * *", "--tz", "localtime"])
    assert result.exit_code == 2
    assert "name the zone" in result.output
    with pytest.raises(ValueError, match="localtime"):
        check_timezone("localtime")
