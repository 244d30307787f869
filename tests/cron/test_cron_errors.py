"""A bad expression gets an error naming the field, pointing at the character and
saying what was expected (promise 7)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from distcron.cron import CronSyntaxError, UnknownTimeZoneError, parse
from distcron.errors import DistcronError


def error_for(expr: str, tz: str = "UTC") -> CronSyntaxError:
    with pytest.raises(CronSyntaxError) as caught:
        parse(expr, tz)
    return caught.value


def caret_column(error: CronSyntaxError) -> int:
    """Where the caret of the message's last line stands, counted in the expression."""
    last = str(error).splitlines()[-1]
    assert last.strip() == "^"
    return last.index("^") - 2  # the expression is indented by two spaces


def test_an_unknown_weekday_name_is_reported_with_a_caret_under_it() -> None:
    error = error_for("0 9 * * MON-FRU")
    assert str(error) == (
        'bad day-of-week in "0 9 * * MON-FRU": unknown name "FRU" (expected sun…sat or 0–7)\n'
        "  0 9 * * MON-FRU\n"
        "              ^"
    )
    assert (error.field, error.position, error.expr) == ("day-of-week", 12, "0 9 * * MON-FRU")


def test_the_error_is_a_value_error_and_a_distcron_error() -> None:
    error = error_for("nonsense")
    assert isinstance(error, ValueError)
    assert isinstance(error, DistcronError)


@pytest.mark.parametrize(
    ("expr", "field", "position", "words"),
    [
        ("٣ 9 * * *", "minute", 0, 'unexpected "٣"'),
        ("0 ９ * * *", "hour", 2, 'unexpected "９"'),
        ("0 9 * * 1;2", "day-of-week", 9, 'unexpected ";"'),
        ("0 9 * * 1 x", "day-of-week", 10, 'unknown name "x"'),
        ("60 9 * * *", "minute", 0, "60 is out of range (expected 0–59)"),
        ("0 24 * * *", "hour", 2, "24 is out of range (expected 0–23)"),
        ("0 9 0 * *", "day-of-month", 4, "0 is out of range (expected 1–31)"),
        ("0 9 * 13 *", "month", 6, "13 is out of range (expected jan…dec or 1–12)"),
        ("0 9 * * 8", "day-of-week", 8, "8 is out of range (expected sun…sat or 0–7)"),
        ("0 9 * * 1-9", "day-of-week", 10, "9 is out of range"),
        ("1234567 * * * *", "minute", 0, "out of range"),
        ("*/0 * * * *", "minute", 2, "a step must be at least 1"),
        ("0 */ * * *", "hour", 4, "expected a step after /"),
        ("0 9 1,,2 * *", "day-of-month", 6, "empty item in list"),
        ("0 9 1, * *", "day-of-month", 6, "empty item at the end of the list"),
        (",1 9 * * *", "minute", 0, "empty item in list"),
        ("0 5-2 * * *", "hour", 4, "runs backwards"),
        ("0 0 * * FRI-MON", "day-of-week", 12, "runs backwards"),
        ("0 0 * JAN-FOO *", "month", 10, 'unknown name "FOO" (expected jan…dec or 1–12)'),
        ("0 0 * * 5#6", "day-of-week", 10, "expected 1–5"),
        ("0 0 * * 1#0", "day-of-week", 10, "expected 1–5"),
        ("0 0 * * L", "day-of-week", 8, "needs a weekday number before it"),
        ("0 0 32W * *", "day-of-month", 4, "32 is out of range"),
        ("0 0 L-31 * *", "day-of-month", 6, "at most L-30"),
        ("0 0 1W-5 * *", "day-of-month", 6, 'unexpected "-"'),
        ("0 0 ?/2 * *", "day-of-month", 5, '"?" stands alone'),
        ("H(5-1) * * * *", "minute", 2, "runs backwards"),
        ("H(1-5 * * * *", "minute", 5, '")" to close H('),
        ("0 0 * * 1-", "day-of-week", 10, "unexpected end of field (expected sun…sat or 0–7)"),
        ("0 0 L 1 5L/2", "day-of-week", 10, 'unexpected "/"'),
    ],
)
def test_a_bad_field_is_named_and_pointed_at(
    expr: str, field: str, position: int, words: str
) -> None:
    error = error_for(expr)
    assert error.field == field
    assert error.position == position
    assert caret_column(error) == position
    assert f"bad {field} in " in str(error)
    assert words in str(error)


@pytest.mark.parametrize(
    ("expr", "position", "count"),
    [("0 9 *", 5, 3), ("0 9 * * 1-5 *  *", 15, 7), ("0 0 1 1 1 1 1", 12, 7), ("", None, 0)],
)
def test_a_wrong_number_of_fields_is_reported(expr: str, position: int | None, count: int) -> None:
    error = error_for(expr)
    assert error.field is None
    assert error.position == position
    assert f"got {count}" in str(error) if count else "empty expression" in str(error)


def test_a_year_field_is_refused_with_a_word_on_why() -> None:
    assert "year field" in str(error_for("0 0 1 1 * 2030 *"))


@pytest.mark.parametrize(
    ("expr", "words"),
    [
        ("0 0 30 2 *", "day 30 never occurs in February"),
        ("0 0 31 2 *", "day 31 never occurs in February"),
        ("0 0 31 4,6,9,11 *", "day 31 never occurs in April, June, September or November"),
        ("0 0 30,31 feb *", "none of those days occurs in February"),
        ("0 0 L-30 2 *", "'L-30' never falls in February"),
        ("0 0 */30 2 1#5", "no day in February matches both"),
    ],
)
def test_a_schedule_that_can_never_fire_is_refused_at_parse(expr: str, words: str) -> None:
    error = error_for(expr)
    assert error.field == "day-of-month"
    assert error.position == 4
    assert words in str(error)
    assert "never fire" in str(error)


@pytest.mark.parametrize(
    "expr",
    [
        "0 0 29 2 *",  # leap years only, but it fires
        "0 0 L-28 2 *",  # the 1st of a leap February
        "0 0 L-30 1 *",  # the 1st of January
        "0 0 31 2 1",  # day-of-month OR day-of-week: every Monday in February
        "0 0 * 2 1#5",  # a fifth Monday in February happens in some leap years
    ],
)
def test_a_schedule_that_fires_only_rarely_is_accepted(expr: str) -> None:
    parse(expr)


def test_a_nearest_weekday_to_a_day_the_month_lacks_never_fires() -> None:
    assert "never f" in str(error_for("0 0 30W 2 *"))


@pytest.mark.parametrize(
    ("expr", "words", "position"),
    [
        ("@reboot", "@reboot is not supported", 0),
        ("@fortnightly", 'unknown macro "@fortnightly"', 0),
        ("@daily 5", "@daily takes nothing after it", 7),
        ("@every 5x", "bad duration", 7),
        ("@every 0s", "at least 1s", 7),
        ("@every 1.5s", "whole number of seconds", 7),
    ],
)
def test_macro_errors_point_at_the_macro(expr: str, words: str, position: int) -> None:
    error = error_for(expr)
    assert words in str(error)
    assert error.position == position


def test_every_without_a_duration_says_what_is_missing() -> None:
    assert "@every needs a duration" in str(error_for("@every"))


def test_an_unknown_time_zone_is_a_syntax_error_naming_the_zone() -> None:
    with pytest.raises(UnknownTimeZoneError) as caught:
        parse("0 0 * * *", "Europe/Amsterdm")
    error = caught.value
    assert isinstance(error, CronSyntaxError)
    assert isinstance(error, ValueError)
    assert error.zone == "Europe/Amsterdm"
    assert error.field == "time zone"
    assert "Europe/Amsterdm" in str(error)


@pytest.mark.parametrize("zone", ["", "../../etc/passwd", "/etc/localtime", "Europe"])
def test_malformed_zone_names_are_unknown_zones(zone: str) -> None:
    with pytest.raises(UnknownTimeZoneError):
        parse("0 0 * * *", zone)


@pytest.mark.parametrize(
    ("blank", "name"),
    [
        ("\u00a0", "no-break space (U+00A0)"),
        ("\u3000", "ideographic space (U+3000)"),
        ("\u2003", "em space (U+2003)"),
        ("\u0085", "next line (U+0085)"),
        ("\n", "line feed (U+000A)"),
    ],
)
def test_other_white_space_between_fields_is_named_with_its_field(blank: str, name: str) -> None:
    error = error_for(f"0 9{blank}* * 1-5")
    assert (error.field, error.position) == ("hour", 3)
    assert error.reason == (
        f"{name} after the hour field: only ASCII spaces and tabs separate fields "
        "(retype it as a plain space)"
    )
    assert caret_column(error) == 3


def test_other_white_space_counts_fields_as_meant() -> None:
    # Six fields when split at any blank: the second field is the minute.
    assert error_for("0 30\u00a02 * * *").field == "minute"
    assert error_for("\u00a00 9 * * *").reason.startswith(
        "no-break space (U+00A0) before the minute"
    )
    assert error_for("@every\u300090s").field is None


def test_ascii_white_space_around_the_expression_is_ignored() -> None:
    after = datetime(2026, 1, 1, tzinfo=UTC)
    for text in ("0 9 * * *\n", "\r\n 0 9 * * *\t", " @daily\n"):
        assert parse(text).next(after) == parse(text.strip()).next(after)


@pytest.mark.parametrize(
    ("expr", "position", "typed"),
    [("0 0 15W,16 * *", 4, '"15W"'), ("0 0 16,15w * *", 7, '"15w"'), ("0 0 L,1W,2 * *", 6, '"1W"')],
)
def test_nearest_weekday_in_a_list_is_refused_where_it_stands(
    expr: str, position: int, typed: str
) -> None:
    error = error_for(expr)
    assert (error.field, error.position) == ("day-of-month", position)
    assert error.reason.startswith(f"{typed} must stand alone")


@pytest.mark.parametrize(
    ("expr", "typed", "hint"), [("0 0 * * monL", "monL", "1L"), ("0 0 * * 1,SUNl", "SUNl", "0L")]
)
def test_l_after_a_weekday_name_is_refused_as_typed(expr: str, typed: str, hint: str) -> None:
    error = error_for(expr)
    assert error.field == "day-of-week"
    assert error.position == expr.index(typed)
    assert error.reason.startswith(f'"{typed}": L follows a weekday number, not a name')
    assert f"write {hint})" in error.reason


@pytest.mark.parametrize(
    ("expr", "position", "words"),
    [
        ("0 0 L-3/2 * *", 7, "L-3 takes no step"),
        ("0 0 LW/2 * *", 6, 'unexpected "/"'),
        ("0 0 1-LW * *", 6, 'unknown name "LW"'),
        ("0 0 L-L * *", 6, "unexpected"),
        ("0 0 30-L 2 *", 4, "never fire"),
    ],
)
def test_l_forms_the_references_refuse_are_refused(expr: str, position: int, words: str) -> None:
    error = error_for(expr)
    assert (error.field, error.position) == ("day-of-month", position)
    assert words in error.reason


def test_l_is_not_a_range_end_outside_day_of_month() -> None:
    error = error_for("0 0 * * 1-L")
    assert (error.field, error.reason) == (
        "day-of-week",
        'unknown name "L" (expected sun…sat or 0–7)',
    )


@pytest.mark.parametrize(("expr", "typed"), [("0 0 1x * *", "x"), ("0 0 1 * 1-5y", "y"),
                                             ("*/2q * * * *", "q")])
def test_the_unexpected_character_is_echoed_as_typed(expr: str, typed: str) -> None:
    error = error_for(expr)
    assert f'unexpected "{typed}"' in str(error)
    assert f'unexpected "{typed.upper()}"' not in str(error)
