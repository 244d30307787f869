"""A worker killed mid-run and started again adopts its run and runs nothing twice."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from distcron.executors.base import RunState
from distcron.store import Store
from distcron.store.layout import output_key
from tests.waiting import eventually

from .conftest import (
    Workers,
    assign,
    final_report,
    ledger,
    ledger_command,
    registration,
    report,
    request,
)

pytestmark = pytest.mark.anyio


async def test_a_worker_killed_mid_run_adopts_the_run_after_restart_and_runs_nothing_twice(
        store: Store, workers: Workers, tmp_path: Path) -> None:
    book, gate = tmp_path / "ledger", tmp_path / "gate"
    long = request("long@2026-11-24T06:00:00Z",
                   ledger_command(book, gate, then="echo long-output; exit 3"))
    # Its key sorts first, and there is one slot: the adopted run must keep it.
    late = request("backlog@2026-11-24T06:00:00Z", ledger_command(book))
    worker = workers("w1", slots=1, lease_ttl=1.0)
    await assign(store, "w1", long)

    async def reported_running() -> bool:
        found = await report(store, long.launch_id)
        return found is not None and found.run_status().state is RunState.RUNNING
    await eventually(reported_running, 10, "the long launch to be reported running")
    running = await report(store, long.launch_id)
    assert running is not None
    before = await registration(store, "w1")
    assert before is not None

    worker.signal(signal.SIGKILL)
    await worker.exited()
    await assign(store, "w1", late)  # arrives while the worker is down
    worker.start()

    async def registered_again() -> bool:
        current = await registration(store, "w1")
        return current is not None and current[1] != before[1]
    await eventually(registered_again, 10, "the restarted worker to register")
    await worker.logged(f"event=adopted launch_id={long.launch_id} state=running")

    gate.touch()
    late_end = await final_report(store, late.launch_id)
    assert late_end.run_status().state is RunState.SUCCEEDED
    long_end = (await final_report(store, long.launch_id)).run_status()
    # The same run, followed to its end by the new process: not started again.
    assert (long_end.state, long_end.exit_code) == (RunState.FAILED, 3)
    assert long_end.pid == running.run_status().pid
    output = await store.get(output_key(long.launch_id))
    assert output is not None and output.value == b"long-output\n"
    # Each ran once, and the late one only after the adopted run freed the slot.
    assert ledger(book) == [f"start {long.launch_id}", f"end {long.launch_id}",
                            f"start {late.launch_id}", f"end {late.launch_id}"]
