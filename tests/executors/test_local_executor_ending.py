"""Timeouts and stops end the job's whole process group, escalating to SIGKILL."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from distcron.executors.base import RunState
from distcron.executors.local import LocalExecutor
from tests.processes import gone
from tests.waiting import eventually

from .conftest import GRACE, launch

pytestmark = pytest.mark.anyio


async def test_a_timeout_kills_the_whole_group_including_grandchildren(
        executor: LocalExecutor, tmp_path: Path) -> None:
    grandchild = tmp_path / "grandchild"
    request = launch(f"sleep 100 & echo $! > '{grandchild}'; sleep 100", timeout=0.5)
    started = await executor.start(request)
    await eventually(lambda: grandchild.exists() and grandchild.read_text().strip() != "", 10,
                     "the job wrote its grandchild's pid")
    status = await executor.wait(request.launch_id)
    assert status.state is RunState.TIMED_OUT
    assert status.signal == 15 and status.exit_code is None
    assert "timed out" in status.reason
    assert started.started_at and status.ended_at
    assert (status.ended_at - started.started_at).total_seconds() >= 0.5
    assert started.pid is not None and gone(started.pid)
    assert gone(int(grandchild.read_text()))


async def test_a_job_that_ignores_sigterm_is_killed_after_the_grace_period(
        executor: LocalExecutor) -> None:
    # An ignored signal stays ignored across exec: sleep ignores TERM too.
    request = launch("trap '' TERM; sleep 100 & echo ready; sleep 100", timeout=0.2)
    await executor.start(request)
    status = await executor.wait(request.launch_id)
    assert (await executor.output(request.launch_id)).startswith(b"ready")
    assert (status.state, status.signal) == (RunState.TIMED_OUT, 9)


async def test_stop_terminates_a_run_and_says_it_was_stopped(
        executor: LocalExecutor, tmp_path: Path) -> None:
    request = launch(f"while [ ! -e '{tmp_path / 'never'}' ]; do sleep 0.02; done")
    started = await executor.start(request)
    stopped = await executor.stop(request.launch_id)
    assert (stopped.state, stopped.signal) == (RunState.STOPPED, 15)
    assert stopped.pid == started.pid
    assert await executor.stop(request.launch_id) == stopped  # idempotent
    assert await executor.query(request.launch_id) == stopped


async def test_stop_escalates_to_sigkill_for_a_job_that_traps_sigterm(
        executor: LocalExecutor) -> None:
    request = launch("trap 'echo got TERM' TERM; echo ready; "
                     "while :; do sleep 0.02; done")
    await executor.start(request)
    await eventually(lambda: _output_starts(executor, request.launch_id, b"ready"), 10,
                     "the trap is in place")
    began = time.monotonic()
    status = await executor.stop(request.launch_id, grace=GRACE)
    assert time.monotonic() - began >= GRACE
    assert (status.state, status.signal) == (RunState.STOPPED, 9)
    assert b"got TERM" in await executor.output(request.launch_id)


async def _output_starts(executor: LocalExecutor, launch_id: str, prefix: bytes) -> bool:
    return (await executor.output(launch_id)).startswith(prefix)


async def test_stop_leaves_an_ended_run_alone(executor: LocalExecutor) -> None:
    request = launch("exit 4")
    await executor.start(request)
    ended = await executor.wait(request.launch_id)
    assert await executor.stop(request.launch_id) == ended
    assert ended.state is RunState.FAILED
