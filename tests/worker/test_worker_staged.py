"""Launches staged on a real worker: assigned with ``release_by``, claimed and
prepared, started only once a release mark (``released/<mark>``) names them.

Before its mark a staged launch runs nothing, and follows its assignment: a
deletion lets it go unrun, a stop reports it stopped unrun, a rewrite stages
the new request instead. A worker killed while holding it adopts it on its
restart and still runs it once, at its mark; a mark seen before the assignment
starts it as soon as it is claimed.
"""

from __future__ import annotations

import json
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from distcron.executors.base import LaunchRequest, RunState
from distcron.executors.rundir import read_status
from distcron.store import Delete, Store
from distcron.store.layout import assignment_key, claim_key, released_key, report_key
from distcron.worker.protocol import assignment_value, stop_value
from tests.serve_harness import holds_for
from tests.waiting import eventually

from .conftest import (
    WorkerProcess,
    Workers,
    claim,
    final_report,
    ledger,
    ledger_command,
    report,
    request,
)

pytestmark = pytest.mark.anyio


async def _assign_staged(store: Store, worker_id: str, launch: LaunchRequest) -> None:
    release_by = datetime.now(UTC) + timedelta(minutes=5)
    await store.put(assignment_key(worker_id, launch.launch_id),
                    assignment_value(launch, release_by))


async def _release(store: Store, mark: str, *launch_ids: str) -> None:
    await store.put(released_key(mark), json.dumps(list(launch_ids)).encode())


async def _staged_on(worker_data: Path, store: Store, launch_id: str) -> None:
    """Claimed by the worker, and held by its executor: staged, nothing run."""
    await eventually(lambda: claim(store, launch_id), 10, f"the claim of {launch_id}")

    def held() -> bool:
        return read_status(worker_data / "runs", launch_id).state is RunState.STAGED
    await eventually(held, 10, f"{launch_id} staged on the worker")


async def _one_staged(store: Store, worker: WorkerProcess, book: Path, job: str
                      ) -> LaunchRequest:
    """A launch of ``job`` (its command appends to ``book``) assigned staged to
    ``worker``, once the worker holds it staged."""
    launch = request(f"{job}@2026-11-24T06:00:00Z", ledger_command(book))
    await _assign_staged(store, worker.worker_id, launch)
    await _staged_on(worker.data_dir, store, launch.launch_id)
    return launch


async def test_a_staged_launch_runs_nothing_until_a_mark_names_it_then_runs_once(
        store: Store, workers: Workers, tmp_path: Path) -> None:
    worker = workers("w1")
    book = tmp_path / "ledger"
    launch = await _one_staged(store, worker, book, "staged")
    # A mark for another launch releases nothing of this one.
    await _release(store, "7-1", "other@2026-11-24T06:00:00Z")
    holds_for(lambda: not ledger(book), 1.0, "nothing runs before its mark")
    assert await report(store, launch.launch_id) is None

    await _release(store, "7-2", launch.launch_id)
    ended = (await final_report(store, launch.launch_id)).run_status()
    assert ended.state is RunState.SUCCEEDED
    assert ledger(book) == [f"start {launch.launch_id}", f"end {launch.launch_id}"]


async def test_a_staged_launch_whose_assignment_is_deleted_is_let_go_unrun(
        store: Store, workers: Workers, tmp_path: Path) -> None:
    worker = workers("w1")
    book = tmp_path / "ledger"
    launch = await _one_staged(store, worker, book, "paused")
    # What the leader's clean-up deletes once it records the slot skipped.
    await store.txn([], [Delete(assignment_key("w1", launch.launch_id)),
                         Delete(claim_key(launch.launch_id)),
                         Delete(report_key(launch.launch_id))])
    await worker.logged("event=unstaged", f"launch_id={launch.launch_id}")
    await _release(store, "7-1", launch.launch_id)
    holds_for(lambda: not ledger(book), 1.0, "a let-go launch never runs")
    assert read_status(worker.data_dir / "runs", launch.launch_id).state \
        is not RunState.RUNNING
    assert await report(store, launch.launch_id) is None


async def test_a_stop_before_the_mark_reports_the_launch_stopped_unrun(
        store: Store, workers: Workers, tmp_path: Path) -> None:
    worker = workers("w1")
    book = tmp_path / "ledger"
    launch = await _one_staged(store, worker, book, "stopped")
    await store.put(assignment_key("w1", launch.launch_id), stop_value(launch.launch_id))
    ended = (await final_report(store, launch.launch_id)).run_status()
    assert ended.state is RunState.STOPPED and ended.pid is None
    assert "before it started" in ended.reason
    await _release(store, "7-1", launch.launch_id)
    holds_for(lambda: not ledger(book), 1.0, "a stopped launch never runs")


async def test_a_rewritten_staged_launch_runs_its_new_request_once(
        store: Store, workers: Workers, tmp_path: Path) -> None:
    worker = workers("w1")
    old, new = tmp_path / "old", tmp_path / "new"
    launch_id = "edited@2026-11-24T06:00:00Z"
    await _assign_staged(store, "w1", request(launch_id, ledger_command(old)))
    await _staged_on(worker.data_dir, store, launch_id)
    await _assign_staged(store, "w1", request(launch_id, ledger_command(new)))
    await worker.logged("event=staged count=1", within=10)
    await eventually(lambda: worker.log().count("event=staged ") >= 2, 10,
                     "the new request staged")
    await _release(store, "7-1", launch_id)
    assert (await final_report(store, launch_id)).run_status().state is RunState.SUCCEEDED
    assert ledger(new) == [f"start {launch_id}", f"end {launch_id}"]
    assert not ledger(old)


async def test_a_worker_killed_while_holding_a_staged_launch_runs_it_once_after_restart(
        store: Store, workers: Workers, tmp_path: Path) -> None:
    worker = workers("w1", lease_ttl=1.0)
    book = tmp_path / "ledger"
    launch = await _one_staged(store, worker, book, "held")
    worker.signal(signal.SIGKILL)
    await worker.exited()
    await _release(store, "7-1", launch.launch_id)  # written while it was down
    holds_for(lambda: not ledger(book), 0.5, "nothing runs without its worker")
    worker.start()
    ended = (await final_report(store, launch.launch_id, within=20)).run_status()
    assert ended.state is RunState.SUCCEEDED
    assert ledger(book) == [f"start {launch.launch_id}", f"end {launch.launch_id}"]


async def test_a_mark_seen_before_the_assignment_starts_it_once_claimed(
        store: Store, workers: Workers, tmp_path: Path) -> None:
    workers("w1")
    book = tmp_path / "ledger"
    launch = request("late@2026-11-24T06:00:00Z", ledger_command(book))
    await _release(store, "7-1", launch.launch_id)
    await _assign_staged(store, "w1", launch)
    assert (await final_report(store, launch.launch_id)).run_status().state \
        is RunState.SUCCEEDED
    assert ledger(book) == [f"start {launch.launch_id}", f"end {launch.launch_id}"]
