"""Hypothesis strategies for valid job specs, shared by the round-trip tests."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from distcron.jobs import JobSpec

SCHEDULES = ["*/5 * * * *", "0 3 * * *", "30 2 * * 1-5", "0 0 1 1 *", "@daily", "@hourly"]
ZONES = ["UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe"]

names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,30}", fullmatch=True)
any_text = st.text(max_size=30)
no_nul_text = any_text.filter(lambda s: "\0" not in s)
durations = st.one_of(
    st.floats(min_value=0.001, max_value=1e12, allow_nan=False, allow_infinity=False),
    st.integers(min_value=1, max_value=10**9),
    st.sampled_from(["90s", "1h30m", "250ms", "2d", "1.5s"]),
)
env_names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True).filter(
    lambda n: not n.startswith("DISTCRON_")
)
tags = st.lists(
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:=/-]{0,12}", fullmatch=True), unique=True, max_size=3
)
header_names = st.from_regex(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,12}", fullmatch=True)
header_values = st.text(max_size=20).filter(lambda s: not any(c in s for c in "\r\n\0"))
urls = st.builds(
    "{}://{}/{}".format,
    st.sampled_from(["http", "https"]),
    st.sampled_from(["example.com", "hooks.internal:8443", "10.0.0.7"]),
    st.from_regex(r"[a-z0-9/_-]{0,12}", fullmatch=True),
)


def _maybe(data: dict[str, Any], key: str, value: object) -> None:
    if value is not None:
        data[key] = value


@st.composite
def job_specs(draw: st.DrawFn) -> JobSpec:
    data: dict[str, Any] = {
        "name": draw(names),
        "schedule": draw(st.sampled_from(SCHEDULES)),
        "timezone": draw(st.sampled_from(ZONES)),
        "executor": draw(st.sampled_from(["local", "agent", "http"])),
    }
    if data["executor"] == "http":
        data["url"] = draw(urls)
        _maybe(data, "method", draw(st.none() | st.sampled_from(["GET", "put", "DELETE"])))
        _maybe(data, "headers", draw(st.none() | st.dictionaries(header_names, header_values)))
        _maybe(data, "body", draw(st.none() | any_text))
    else:
        if draw(st.booleans()):
            data["command"] = draw(no_nul_text.filter(str.strip))
        else:
            data["argv"] = draw(
                st.lists(no_nul_text, min_size=1, max_size=4).filter(lambda a: a[0])
            )
        _maybe(data, "env", draw(st.none() | st.dictionaries(env_names, no_nul_text, max_size=3)))
        _maybe(data, "workdir", draw(st.none() | no_nul_text.map(lambda s: "/" + s)))
    _maybe(data, "description", draw(st.none() | any_text))
    _maybe(data, "owner", draw(st.none() | any_text))
    _maybe(data, "timeout", draw(st.none() | durations))
    _maybe(data, "starting_deadline", draw(st.none() | durations))
    _maybe(data, "retry_backoff", draw(st.none() | durations))
    _maybe(data, "retries", draw(st.none() | st.integers(min_value=0, max_value=50)))
    _maybe(
        data,
        "concurrency",
        draw(st.none() | st.sampled_from(["forbid", "allow", "replace", "queue"])),
    )
    _maybe(data, "catchup", draw(st.none() | st.sampled_from(["none", "last", "all"])))
    _maybe(data, "idempotent", draw(st.none() | st.booleans()))
    _maybe(data, "paused", draw(st.none() | st.booleans()))
    _maybe(data, "tags", draw(st.none() | tags))
    return JobSpec.model_validate(data)
