"""The leader stops a launch on a worker by rewriting its assignment as a stop
request: a live run is stopped (its whole process group) and reported
``stopped``; a launch not yet claimed is never started, even when the worker
was down when the stop came, or the stop lands between its read and its claim.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from distcron.clock import SystemClock
from distcron.executors.base import RunState
from distcron.executors.local import LocalExecutor
from distcron.store import Delete, Put, Store
from distcron.store.layout import CLAIMS, assignment_key, claim_key, output_key, report_key
from distcron.worker.agent import WorkerAgent, WorkerConfig
from distcron.worker.protocol import Report, stop_value
from tests.interposing_store import InterposingStore
from tests.processes import gone
from tests.waiting import eventually

from .conftest import (
    Workers,
    assign,
    claim,
    final_report,
    ledger,
    ledger_command,
    registration,
    report,
    request,
)

pytestmark = pytest.mark.anyio


async def _stop(store: Store, worker_id: str, launch_id: str) -> None:
    """What the leader writes to stop a launch (see distcron.replica.commit)."""
    await store.put(assignment_key(worker_id, launch_id), stop_value(launch_id))


async def _reported_running(store: Store, launch_id: str) -> Report:
    async def running() -> Report | None:
        found = await report(store, launch_id)
        return found if found and found.run_status().state is RunState.RUNNING else None
    return await eventually(running, 10, f"a running report of {launch_id}")


def _with_child(child_pid: Path, command: str) -> str:
    """``command``, after starting a background child (in the job's process
    group) whose pid goes to ``child_pid``."""
    return f"sleep 300 & echo $! > {child_pid}; {command}"


async def test_a_stop_request_for_a_running_launch_kills_its_process_group_and_reports_it_stopped(
        store: Store, workers: Workers, tmp_path: Path) -> None:
    worker = workers("w1")
    book, gate, child = tmp_path / "ledger", tmp_path / "gate", tmp_path / "child.pid"
    launch = request("long@2026-11-24T06:00:00Z",
                     _with_child(child, ledger_command(book, gate)))
    await assign(store, "w1", launch)
    running = (await _reported_running(store, launch.launch_id)).run_status()
    assert running.pid is not None
    child_pid = int(await eventually(lambda: child.exists() and child.read_text().strip(), 10,
                                     "the job's child to write its pid"))

    await _stop(store, "w1", launch.launch_id)
    ended = await final_report(store, launch.launch_id)
    status = ended.run_status()
    assert (ended.worker, status.state, status.pid) == ("w1", RunState.STOPPED, running.pid)
    await worker.logged(f"event=run_stopping launch_id={launch.launch_id}")
    # The whole process group went, the job and what it started; the gate was
    # never opened, so the job never got to its end.
    await eventually(lambda: gone(running.pid or 0) and gone(child_pid), 10,
                     "the job and its child to be gone")
    assert ledger(book) == [f"start {launch.launch_id}"]
    assert await store.get(output_key(launch.launch_id)) is not None

    # The leader records the outcome and cleans up, as for any end.
    await store.txn((), [Delete(assignment_key("w1", launch.launch_id)),
                         Delete(claim_key(launch.launch_id)),
                         Delete(report_key(launch.launch_id))])
    await worker.logged(f"event=unassigned launch_id={launch.launch_id}")
    current = await registration(store, "w1")
    assert current is not None and current[0].running == 0


async def test_a_stop_for_an_unclaimed_assignment_means_it_never_runs(
        store: Store, workers: Workers, tmp_path: Path) -> None:
    worker = workers("w1", slots=1)
    book, gate = tmp_path / "ledger", tmp_path / "gate"
    first = request("first@2026-11-24T06:00:00Z", ledger_command(book, gate))
    stopped = request("stopped@2026-11-24T06:00:00Z", ledger_command(book))
    await assign(store, "w1", first)
    await _reported_running(store, first.launch_id)
    await assign(store, "w1", stopped)
    await worker.logged(f"event=assignment_waiting launch_id={stopped.launch_id} "
                        "reason=slots_full")

    await _stop(store, "w1", stopped.launch_id)
    # Reported at once, while the only slot is still taken: a stopped launch
    # starts nothing, so it does not wait for one.
    ended = (await final_report(store, stopped.launch_id)).run_status()
    assert ended.state is RunState.STOPPED and ended.pid is None
    assert "before it started" in ended.reason
    still = await report(store, first.launch_id)
    assert still is not None and still.run_status().state is RunState.RUNNING
    claimed = await claim(store, stopped.launch_id)
    assert claimed is not None and claimed.worker == "w1"

    gate.touch()
    assert (await final_report(store, first.launch_id)).run_status().state \
        is RunState.SUCCEEDED
    assert ledger(book) == [f"start {first.launch_id}", f"end {first.launch_id}"]


async def test_stop_requests_written_while_the_worker_was_down_hold_after_its_restart(
        store: Store, workers: Workers, tmp_path: Path) -> None:
    book, gate, child = tmp_path / "ledger", tmp_path / "gate", tmp_path / "child.pid"
    live = request("live@2026-11-24T06:00:00Z", _with_child(child, ledger_command(book, gate)))
    late = request("late@2026-11-24T06:00:00Z", ledger_command(book))
    worker = workers("w1", slots=2)
    await assign(store, "w1", live)
    running = (await _reported_running(store, live.launch_id)).run_status()
    child_pid = int(await eventually(lambda: child.exists() and child.read_text().strip(), 10,
                                     "the job's child to write its pid"))

    worker.signal(signal.SIGKILL)
    await worker.exited()
    # While it is down: its live run is to stop, and a launch assigned since
    # is stopped before it could ever be claimed.
    await _stop(store, "w1", live.launch_id)
    await assign(store, "w1", late)
    await _stop(store, "w1", late.launch_id)
    worker.start()

    live_end = (await final_report(store, live.launch_id)).run_status()
    assert (live_end.state, live_end.pid) == (RunState.STOPPED, running.pid)
    await worker.logged(f"event=adopted launch_id={live.launch_id} state=running")
    late_end = (await final_report(store, late.launch_id)).run_status()
    assert late_end.state is RunState.STOPPED and "before it started" in late_end.reason
    await eventually(lambda: gone(running.pid or 0) and gone(child_pid), 10,
                     "the adopted job and its child to be gone")
    assert ledger(book) == [f"start {live.launch_id}"]


async def test_a_stop_written_between_the_workers_read_and_its_claim_means_it_never_runs(
        store: Store, tmp_path: Path) -> None:
    """The real agent in this process, on the SQLite store file: the claim is
    guarded by the assignment's value, so it fails, and the stop is seen."""
    book = tmp_path / "ledger"
    launch = request("raced@2026-11-24T06:00:00Z", ledger_command(book))
    # The leader's stop lands between the worker's read of the assignment and its claim.
    racing = InterposingStore(store, when=lambda success: any(
        isinstance(op, Put) and op.key.startswith(CLAIMS) for op in success))
    raced = asyncio.Event()

    async def leader_stops(inner: Store) -> None:
        await _stop(inner, "w1", launch.launch_id)
        raced.set()
    racing.before_txn = leader_stops

    executor = LocalExecutor(tmp_path / "runs", poll_interval=0.02)
    agent = WorkerAgent(racing, executor, WorkerConfig("w1", slots=1, lease_ttl=1.0),
                        SystemClock())
    done = asyncio.Event()
    running = asyncio.create_task(agent.run(done))
    try:
        await eventually(lambda: registration(store, "w1"), 10, "the worker to register")
        await assign(store, "w1", launch)
        ended = (await final_report(store, launch.launch_id)).run_status()
        assert raced.is_set()
        assert ended.state is RunState.STOPPED and "before it started" in ended.reason
        assert (await executor.query(launch.launch_id)).state is RunState.NOT_FOUND
        assert ledger(book) == []
    finally:
        done.set()
        await running
        await executor.close()
