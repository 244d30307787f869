"""Writing jobs as TOML: what is written reads back as the same jobs."""

from __future__ import annotations

import tomllib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from distcron.jobs import JobSpec, build_spec, dump_jobs_toml, parse_jobs_toml
from tests.jobs.jobspec_strategies import job_specs

BASE = {"name": "nightly", "schedule": "0 3 * * *", "command": "backup.sh"}


@given(st.lists(job_specs(), max_size=4, unique_by=lambda spec: spec.name))
def test_jobs_written_as_toml_read_back_equal(specs: list[JobSpec]) -> None:
    assert parse_jobs_toml(dump_jobs_toml(specs)) == specs


@pytest.mark.parametrize(
    "text",
    [
        'say "hi"',
        "back\\slash",
        "it's",
        "both ' and \" and \\",
        "line one\nline two",
        "windows\r\nline ends",
        "ends with a quote'",
        "'starts with a quote",
        "three '''quotes",
        "tab\there",
        "bell\x07 nul\x00 del\x7f cr\r",
        "unicode: café ✓ 🎉 \u2028",
        "\n",
        "",
    ],
)
def test_any_string_survives_the_trip_through_toml(text: str) -> None:
    spec = build_spec({**BASE, "description": text})
    assert parse_jobs_toml(dump_jobs_toml([spec])) == [spec]


def test_keys_at_their_default_are_left_out() -> None:
    text = dump_jobs_toml([build_spec(BASE)])
    assert text == '[[job]]\nname = "nightly"\nschedule = "0 3 * * *"\ncommand = "backup.sh"\n'


def test_durations_are_written_as_people_write_them_when_exact() -> None:
    spec = build_spec({**BASE, "timeout": 5400, "retry_backoff": 0.25, "starting_deadline": "2d"})
    document = tomllib.loads(dump_jobs_toml([spec]))["job"][0]
    assert (document["timeout"], document["retry_backoff"], document["starting_deadline"]) == (
        "1h30m",
        0.25,
        "2d",
    )


def test_shell_commands_with_backslashes_read_back_as_written() -> None:
    spec = build_spec({**BASE, "command": r"grep -E '\d+' /var/log/app.log"})
    (document,) = tomllib.loads(dump_jobs_toml([spec]))["job"]
    assert document["command"] == r"grep -E '\d+' /var/log/app.log"


def test_tables_follow_their_job_as_its_own_tables_with_quoted_keys_where_needed() -> None:
    spec = build_spec(
        {
            "name": "hook",
            "schedule": "@hourly",
            "executor": "http",
            "url": "https://example.com/",
            "headers": {"X-Token": "t", "a.b": "c"},
            "tags": ["eu", "gpu"],
        }
    )
    text = dump_jobs_toml([spec])
    assert '[job.headers]\nX-Token = "t"\n"a.b" = "c"\n' in text
    assert parse_jobs_toml(text) == [spec]
    # Each job is a [[job]] table even when short, so errors can name its lines.
    assert dump_jobs_toml([build_spec(BASE)] * 2).count("[[job]]\n") == 2


def test_a_header_becomes_a_comment_at_the_top() -> None:
    text = dump_jobs_toml([build_spec(BASE)], header="Imported.\n\nReview me.")
    assert text.startswith("# Imported.\n#\n# Review me.\n\n[[job]]\n")
    assert parse_jobs_toml(text) == [build_spec(BASE)]


def test_no_jobs_make_an_empty_file() -> None:
    assert parse_jobs_toml(dump_jobs_toml([])) == []
