"""Runs over HTTP: launch records newest first, filters, one run with its output."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from distcron.api.runs import new_bytes
from distcron.scheduler.records import LaunchKind, LaunchRecord, LaunchState, launch_id_for
from tests.served_api import ServedApi

SLOT = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)
RUN_FIELDS = {"launch_id", "job", "slot", "state", "worker", "exit_code", "started_at",
              "ended_at"}


def _record(job: str, slot: datetime, state: LaunchState, **more: object) -> LaunchRecord:
    return LaunchRecord(launch_id=launch_id_for(job, slot), job=job, slot=slot, state=state,
                        **more)


@pytest.fixture
def history(seed: Callable[..., None]) -> list[LaunchRecord]:
    """Five records of two jobs, newest first: a manual run sorts by when it was asked for."""
    records = [
        _record("backup", SLOT, LaunchState.RUNNING, worker="w1", started_at=SLOT),
        LaunchRecord(launch_id="backup@manual-20261124T050000-a1b2c3", job="backup", slot=None,
                     kind=LaunchKind.MANUAL, state=LaunchState.SUCCEEDED,
                     intent_at=SLOT - timedelta(hours=1), exit_code=0),
        _record("report", SLOT - timedelta(hours=2), LaunchState.FAILED, exit_code=2),
        _record("backup", SLOT - timedelta(days=1), LaunchState.SUCCEEDED, exit_code=0),
        _record("backup", SLOT - timedelta(days=4), LaunchState.MISSED,
                until=SLOT - timedelta(days=2), count=3, reason="no leader"),
    ]
    seed(*reversed(records))
    return records


def test_runs_are_listed_newest_first_with_every_field_present(
    client: httpx.Client, history: list[LaunchRecord]
) -> None:
    runs = client.get("/runs").json()
    assert [r["launch_id"] for r in runs] == [r.launch_id for r in history]
    assert all(set(run) >= RUN_FIELDS for run in runs)
    first = runs[0]
    assert (first["slot"], first["worker"], first["exit_code"], first["ended_at"]) == (
        "2026-11-24T06:00:00Z", "w1", None, None)
    missed = runs[-1]
    assert (missed["count"], missed["until"], missed["reason"]) == (
        3, "2026-11-22T06:00:00Z", "no leader")


def test_runs_filter_by_job_and_state_and_obey_the_limit(
    client: httpx.Client, history: list[LaunchRecord]
) -> None:
    backup = client.get("/runs", params={"job": "backup"}).json()
    assert [r["launch_id"] for r in backup] == [r.launch_id for r in history if r.job == "backup"]
    succeeded = client.get("/runs", params={"state": "succeeded"}).json()
    assert [r["launch_id"] for r in succeeded] == [history[1].launch_id, history[3].launch_id]
    both = client.get("/runs", params={"job": "report", "state": "failed"}).json()
    assert [r["launch_id"] for r in both] == [history[2].launch_id]
    assert len(client.get("/runs", params={"limit": 2}).json()) == 2


def test_an_unknown_state_or_a_zero_limit_is_rejected(client: httpx.Client) -> None:
    assert client.get("/runs", params={"state": "exploded"}).status_code == 422
    assert client.get("/runs", params={"limit": 0}).status_code == 422


def test_one_run_is_found_by_its_launch_id_with_at_sign_and_colons(
    client: httpx.Client, history: list[LaunchRecord]
) -> None:
    answer = client.get("/runs/backup@2026-11-24T06:00:00Z")
    assert answer.status_code == 200, answer.text
    run = answer.json()
    assert (run["launch_id"], run["state"], run["worker"]) == (
        "backup@2026-11-24T06:00:00Z", "running", "w1")
    assert run["output"] is None
    assert client.get(f"/runs/{history[1].launch_id}").json()["kind"] == "manual"


def test_an_unknown_launch_is_404_naming_it(client: httpx.Client) -> None:
    answer = client.get("/runs/backup@2030-01-01T00:00:00Z")
    assert answer.status_code == 404
    assert "backup@2030-01-01T00:00:00Z" in answer.json()["detail"]


def test_output_needs_the_token_and_comes_decoded_with_bad_bytes_replaced(
    api: ServedApi, client: httpx.Client, seed: Callable[..., None]
) -> None:
    record = _record("backup", SLOT, LaunchState.SUCCEEDED, exit_code=0)
    seed(record, output=b"dumped 3 tables\n\xff\n")
    path = f"/runs/{record.launch_id}"
    with httpx.Client(base_url=api.url) as anonymous:
        assert anonymous.get(path, params={"output": "true"}).status_code == 401
        assert anonymous.get(path).status_code == 200
    run = client.get(path, params={"output": "true"}).json()
    assert run["output"] == "dumped 3 tables\n\ufffd\n"
    assert run["exit_code"] == 0


@given(st.lists(st.binary(min_size=1, max_size=300), min_size=1, max_size=30),
       st.integers(300, 2000))
def test_a_followed_output_tail_yields_each_written_byte_once(
    writes: list[bytes], limit: int
) -> None:
    """The store keeps a run's last ``limit`` bytes; what a follow sends, poll
    after poll, is what was written while it fits, and then (distinct bytes
    scrolling through the tail) still each byte once."""
    written, sent, shown = b"", b"", b""
    for n, chunk in enumerate(writes):
        # Distinct lines, as a job's output mostly is: a repeated tail cannot be placed.
        written += b"%d:" % n + chunk + b"\n"
        tail = written[-limit:]
        shown += new_bytes(sent, tail)
        sent = tail
    if b"[... output skipped ...]" not in shown:
        assert shown == written
