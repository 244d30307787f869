"""The spec as the store keeps it: canonical JSON, read back exactly by every replica."""

from __future__ import annotations

import json

import pytest
from hypothesis import given

from distcron.jobs import JobSpec, JobSpecErrors, build_spec
from tests.jobs.jobspec_strategies import job_specs

BASE = {"name": "nightly", "schedule": "0 3 * * *", "command": "backup.sh"}


@given(job_specs())
def test_a_spec_read_back_from_its_json_is_equal_and_writes_the_same_json(spec: JobSpec) -> None:
    text = spec.to_json()
    again = JobSpec.from_json(text)
    assert again == spec
    assert again.to_json() == text
    assert again.fingerprint() == spec.fingerprint()


@given(job_specs())
def test_json_from_bytes_reads_the_same_spec(spec: JobSpec) -> None:
    assert JobSpec.from_json(spec.to_json().encode()) == spec


def test_json_is_canonical_whatever_order_the_keys_were_given_in() -> None:
    one = build_spec({**BASE, "env": {"A": "1", "B": "2"}, "timeout": "90s"})
    two = build_spec({"timeout": 90, "env": {"B": "2", "A": "1"}, **BASE})
    assert one.to_json() == two.to_json()
    assert one.fingerprint() == two.fingerprint()
    assert hash(one) == hash(two)


def test_json_holds_durations_as_seconds_and_every_key() -> None:
    data = json.loads(build_spec({**BASE, "timeout": "1h30m"}).to_json())
    assert data["timeout"] == 5400.0
    assert set(data) == set(JobSpec.model_fields)


def test_any_change_changes_the_fingerprint() -> None:
    base = build_spec(BASE)
    changed = [
        build_spec({**BASE, "paused": True}),
        build_spec({**BASE, "command": "backup.sh "}),
        build_spec({**BASE, "retries": 1}),
    ]
    assert len({base.fingerprint(), *(c.fingerprint() for c in changed)}) == 4


def test_specs_can_be_kept_in_sets() -> None:
    assert len({build_spec(BASE), build_spec(dict(BASE)), build_spec({**BASE, "name": "b"})}) == 2


def test_invalid_stored_json_raises_spec_errors_naming_the_source() -> None:
    with pytest.raises(JobSpecErrors) as caught:
        JobSpec.from_json('{"name": "x", "schedule": "0 3 * * *"}', source="/jobs/x")
    assert caught.value.source == "/jobs/x"
    assert "field 'command'" in str(caught.value)


def test_malformed_json_raises_spec_errors() -> None:
    with pytest.raises(JobSpecErrors):
        JobSpec.from_json("{not json")
