"""Every key of a job spec: its default, values it accepts, values it rejects."""

from __future__ import annotations

from typing import Any

import pytest

from distcron.errors import JobSpecError
from distcron.jobs import JobSpec, JobSpecErrors, build_spec

BASE: dict[str, Any] = {"name": "nightly", "schedule": "0 3 * * *", "command": "backup.sh"}
HTTP: dict[str, Any] = {
    "name": "hook",
    "schedule": "*/5 * * * *",
    "executor": "http",
    "url": "https://example.com/run",
}


def spec(**changes: Any) -> JobSpec:
    return build_spec({**BASE, **changes})


def rejection(data: dict[str, Any]) -> JobSpecErrors:
    with pytest.raises(JobSpecErrors) as caught:
        build_spec(data)
    return caught.value


def test_a_minimal_job_gets_the_documented_defaults() -> None:
    job = spec()
    assert job.timezone == "UTC"
    assert job.executor == "local"
    assert job.concurrency == "forbid"
    assert job.catchup == "last"
    assert job.starting_deadline == 3600.0
    assert job.timeout is None
    assert job.retries == 0
    assert job.retry_backoff == 10.0
    assert job.idempotent is False
    assert job.paused is False
    assert job.env == {}
    assert job.tags == ()
    assert (job.argv, job.workdir, job.description, job.owner) == (None, None, None, None)
    assert (job.url, job.method, job.headers, job.body) == (None, None, None, None)


def test_a_spec_is_frozen() -> None:
    job = spec()
    with pytest.raises(ValueError, match="frozen"):
        job.name = "other"


@pytest.mark.parametrize("name", ["a", "backup", "db.backup-2_nightly", "9lives", "A" * 128])
def test_names_of_letters_digits_dots_dashes_and_underscores_are_accepted(name: str) -> None:
    assert spec(name=name).name == name


@pytest.mark.parametrize(
    "name", ["", "-leading-dash", ".hidden", "has space", "a@b", "a/b", "A" * 129, "café"]
)
def test_names_that_cannot_go_into_keys_or_launch_ids_are_rejected(name: str) -> None:
    error = rejection({**BASE, "name": name})
    assert [(p.field, p.job) for p in error.problems] == [("name", name)]
    assert "launch ids" in str(error)


@pytest.mark.parametrize("key", ["name", "schedule"])
def test_name_and_schedule_are_required(key: str) -> None:
    data = {k: v for k, v in BASE.items() if k != key}
    error = rejection(data)
    assert [(p.field, p.message) for p in error.problems] == [(key, "is required")]


def test_a_job_without_a_name_is_reported_without_one() -> None:
    error = rejection({"schedule": "0 3 * * *", "command": "x"})
    assert error.problems[0].job is None


@pytest.mark.parametrize("zone", ["UTC", "Europe/Paris", "America/Argentina/Buenos_Aires"])
def test_iana_time_zones_are_accepted(zone: str) -> None:
    assert spec(timezone=zone).timezone == zone


def test_an_unknown_time_zone_is_rejected_with_the_closest_known_one() -> None:
    error = rejection({**BASE, "timezone": "Europe/Pariss"})
    assert error.field == "timezone"
    assert "unknown time zone 'Europe/Pariss' (did you mean 'Europe/Paris'?)" in str(error)


def test_a_time_zone_in_the_wrong_case_is_rejected_with_the_right_spelling() -> None:
    assert "did you mean 'America/New_York'" in str(
        rejection({**BASE, "timezone": "america/new_york"})
    )


def test_localtime_is_rejected_because_replicas_would_disagree_on_it() -> None:
    assert rejection({**BASE, "timezone": "localtime"}).field == "timezone"


def test_a_bad_schedule_names_the_job_and_field_and_keeps_the_engines_caret() -> None:
    error = rejection({**BASE, "schedule": "0 25 * * *"})
    assert (error.job, error.field) == ("nightly", "schedule")
    assert "hour" in str(error)
    assert "^" in str(error)


def test_a_schedule_is_checked_even_when_the_name_and_zone_are_bad() -> None:
    error = rejection(
        {**BASE, "name": "bad name", "timezone": "Nowhere/Land", "schedule": "61 * * * *"}
    )
    assert sorted(p.field or "" for p in error.problems) == ["name", "schedule", "timezone"]


@pytest.mark.parametrize("schedule", ["*/5 * * * *", "0 3 * * 1-5", "@daily", "@hourly"])
def test_common_schedules_are_accepted(schedule: str) -> None:
    assert spec(schedule=schedule).schedule == schedule


def test_a_hashed_schedule_is_accepted_since_the_name_seeds_it() -> None:
    assert spec(schedule="H 3 * * *").schedule == "H 3 * * *"


def test_argv_may_replace_command() -> None:
    job = build_spec({"name": "a", "schedule": "@daily", "argv": ["/bin/echo", "hi"]})
    assert (job.command, job.argv) == (None, ("/bin/echo", "hi"))


def test_a_job_with_both_command_and_argv_is_rejected() -> None:
    error = rejection({**BASE, "argv": ["x"]})
    assert error.field == "command"
    assert "exactly one of 'command' or 'argv'" in str(error)


def test_a_local_job_with_neither_command_nor_argv_is_rejected() -> None:
    error = rejection({"name": "a", "schedule": "@daily"})
    assert error.field == "command"


@pytest.mark.parametrize("argv", [[], [""], ["ok", "nul\0byte"]])
def test_argv_must_name_a_program_and_hold_no_nul(argv: list[str]) -> None:
    data = {"name": "a", "schedule": "@daily", "argv": argv}
    assert rejection(data).field == "argv"


def test_argv_items_must_be_strings() -> None:
    data = {"name": "a", "schedule": "@daily", "argv": ["echo", 3]}
    error = rejection(data)
    assert error.field == "argv[1]"
    assert "(got 3)" in str(error)


@pytest.mark.parametrize("command", ["", "   ", "echo \0"])
def test_an_empty_command_or_one_with_nul_is_rejected(command: str) -> None:
    assert rejection({**BASE, "command": command}).field == "command"


def test_env_holds_string_variables() -> None:
    assert spec(env={"PATH": "/usr/bin", "_X1": ""}).env == {"PATH": "/usr/bin", "_X1": ""}


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"1BAD": "x"}, "not a valid environment variable name"),
        ({"A-B": "x"}, "not a valid environment variable name"),
        ({"DISTCRON_JOB": "x"}, "set by distcron"),
        ({"A": "nul\0"}, "NUL"),
        ({"A": 1}, "must be a string"),
    ],
)
def test_bad_environment_variables_are_rejected(env: dict[str, Any], fragment: str) -> None:
    error = rejection({**BASE, "env": env})
    assert (error.field or "").startswith("env")
    assert fragment in str(error)


def test_workdir_must_be_absolute() -> None:
    assert spec(workdir="/srv/app").workdir == "/srv/app"
    assert rejection({**BASE, "workdir": "srv/app"}).field == "workdir"


@pytest.mark.parametrize(
    ("given", "seconds"),
    [(90, 90.0), (1.5, 1.5), ("90s", 90.0), ("1h30m", 5400.0), ("250ms", 0.25)],
)
def test_durations_are_numbers_of_seconds_or_duration_strings(given: Any, seconds: float) -> None:
    job = spec(timeout=given, starting_deadline=given, retry_backoff=given)
    assert (job.timeout, job.starting_deadline, job.retry_backoff) == (seconds, seconds, seconds)


@pytest.mark.parametrize("key", ["timeout", "starting_deadline", "retry_backoff"])
@pytest.mark.parametrize(
    "given", [0, -1, "0s", "-5s", "soon", "1x", True, [1], float("inf"), 10**400]
)
def test_durations_that_are_not_positive_and_finite_are_rejected(key: str, given: Any) -> None:
    error = rejection({**BASE, key: given})
    assert (error.job, error.field) == ("nightly", key)


@pytest.mark.parametrize("key", ["concurrency", "catchup", "executor"])
def test_policies_accept_only_their_documented_values(key: str) -> None:
    error = rejection({**BASE, key: "sometimes"})
    assert error.field == key
    assert "(got 'sometimes')" in str(error)


@pytest.mark.parametrize("value", ["forbid", "allow", "replace", "queue"])
def test_every_concurrency_policy_is_accepted(value: str) -> None:
    assert spec(concurrency=value).concurrency == value


@pytest.mark.parametrize("value", ["none", "last", "all"])
def test_every_catchup_policy_is_accepted(value: str) -> None:
    assert spec(catchup=value).catchup == value


def test_retries_must_be_a_whole_number_not_below_zero() -> None:
    assert spec(retries=3).retries == 3
    for bad in (-1, 1.5, "2", True):
        assert rejection({**BASE, "retries": bad}).field == "retries"


@pytest.mark.parametrize("key", ["idempotent", "paused"])
def test_flags_must_be_booleans_not_strings(key: str) -> None:
    assert getattr(spec(**{key: True}), key) is True
    assert rejection({**BASE, key: "yes"}).field == key


def test_tags_are_kept_in_order() -> None:
    assert spec(tags=["gpu", "zone=eu-1", "team:data"]).tags == ("gpu", "zone=eu-1", "team:data")


@pytest.mark.parametrize("tags", [["has space"], ["a,b"], [""], ["gpu", "gpu"], "gpu"])
def test_tags_that_workers_could_not_match_are_rejected(tags: Any) -> None:
    assert (rejection({**BASE, "tags": tags}).field or "").startswith("tags")


@pytest.mark.parametrize("key", ["description", "owner"])
def test_description_and_owner_are_free_text(key: str) -> None:
    assert getattr(spec(**{key: "Nightly DB backup — ops@example.com"}), key)
    assert rejection({**BASE, key: 5}).field == key


def test_an_unknown_key_is_rejected_with_the_closest_known_key() -> None:
    error = rejection({**BASE, "timzone": "UTC"})
    assert error.field == "timzone"
    assert "unknown key 'timzone' (did you mean 'timezone'?)" in str(error)


def test_an_http_job_defaults_to_post() -> None:
    job = build_spec(HTTP)
    assert (job.executor, job.url, job.method, job.command) == ("http", HTTP["url"], "POST", None)


def test_an_http_job_takes_a_method_headers_and_body() -> None:
    job = build_spec({**HTTP, "method": "put", "headers": {"X-Token": "t"}, "body": "{}"})
    assert (job.method, job.headers, job.body) == ("PUT", {"X-Token": "t"}, "{}")


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"url": "ftp://example.com/"}, "url"),
        ({"url": "https:///no-host"}, "url"),
        ({"url": "https://example.com/a b"}, "url"),
        ({"method": "FETCH"}, "method"),
        ({"headers": {"Bad Header": "x"}}, "headers"),
        ({"headers": {"X": "line\r\nInjected: 1"}}, "headers"),
        ({"command": "echo"}, "command"),
        ({"argv": ["echo"]}, "argv"),
        ({"env": {"A": "1"}}, "env"),
        ({"workdir": "/tmp"}, "workdir"),
    ],
)
def test_bad_or_foreign_keys_of_an_http_job_are_rejected(
    changes: dict[str, Any], field: str
) -> None:
    assert rejection({**HTTP, **changes}).field == field


def test_an_http_job_needs_a_url() -> None:
    data = {k: v for k, v in HTTP.items() if k != "url"}
    error = rejection(data)
    assert (error.field, "is required with executor 'http'") == ("url", error.problems[0].message)


@pytest.mark.parametrize("key", ["url", "method", "headers", "body"])
def test_http_keys_are_rejected_on_a_local_job(key: str) -> None:
    value: Any = {"url": "https://x.org/", "method": "GET", "headers": {"A": "b"}, "body": "x"}[key]
    error = rejection({**BASE, key: value})
    assert error.field == key
    assert "only for executor 'http'" in str(error)


def test_an_agent_job_runs_a_command_like_a_local_one() -> None:
    assert spec(executor="agent", tags=["gpu"]).executor == "agent"


def test_every_problem_of_a_spec_is_reported_together() -> None:
    error = rejection({**BASE, "timezone": "Mars/Base", "retries": -2, "colour": "red"})
    assert {p.field for p in error.problems} == {"timezone", "retries", "colour"}
    assert error.job is None  # more than one problem: see .problems
    assert len(str(error).splitlines()) == 4


def test_spec_errors_are_job_spec_errors_and_value_errors() -> None:
    error = rejection({**BASE, "retries": -1})
    assert isinstance(error, JobSpecError)
    assert isinstance(error, ValueError)
    assert "job 'nightly', field 'retries'" in str(error)
