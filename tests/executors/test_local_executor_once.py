"""A launch id starts one process, however many times and from wherever it is started."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from distcron.errors import ExecutorError
from distcron.executors.base import RunState
from distcron.executors.local import LocalExecutor
from distcron.executors.rundir import RunSpec, claim, request_stop
from tests.waiting import eventually

from .conftest import NewExecutor, gated, launch, lines

pytestmark = pytest.mark.anyio


def _counting_job(tmp_path: Path) -> tuple[str, Path, Path]:
    """A job that appends one line when it starts, then waits for its gate."""
    count, gate = tmp_path / "count", tmp_path / "gate"
    return f"echo $$ >> '{count}'; " + gated(gate), count, gate


async def test_starting_a_launch_again_returns_its_status_and_starts_nothing(
        executor: LocalExecutor, tmp_path: Path) -> None:
    command, count, gate = _counting_job(tmp_path)
    request = launch(command)
    first = await executor.start(request)
    again = await executor.start(request)
    assert first.state is again.state is RunState.RUNNING
    assert again.pid == first.pid
    gate.touch()
    ended = await executor.wait(request.launch_id)
    assert await executor.start(request) == ended
    assert ended.state is RunState.SUCCEEDED
    assert len(lines(count)) == 1


async def test_concurrent_starts_in_one_executor_run_the_job_once(
        executor: LocalExecutor, tmp_path: Path) -> None:
    command, count, gate = _counting_job(tmp_path)
    request = launch(command)
    statuses = await asyncio.gather(*(executor.start(request) for _ in range(5)))
    assert {status.state for status in statuses} == {RunState.RUNNING}
    assert len({status.pid for status in statuses} - {None}) == 1
    gate.touch()
    assert (await executor.wait(request.launch_id)).state is RunState.SUCCEEDED
    assert len(lines(count)) == 1


async def test_two_executors_on_one_run_dir_run_the_job_once(
        new_executor: NewExecutor, tmp_path: Path) -> None:
    command, count, gate = _counting_job(tmp_path)
    request = launch(command)
    one, two = new_executor(), new_executor()
    statuses = await asyncio.gather(one.start(request), two.start(request),
                                    one.start(request), two.start(request))
    gate.touch()
    assert len({status.pid for status in statuses} - {None}) == 1
    assert (await two.wait(request.launch_id)).state is RunState.SUCCEEDED
    assert (await one.query(request.launch_id)).state is RunState.SUCCEEDED
    assert len(lines(count)) == 1


async def test_a_launch_whose_starter_died_before_its_supervisor_is_started_by_the_next(
        executor: LocalExecutor, run_dir: Path, tmp_path: Path) -> None:
    command, count, gate = _counting_job(tmp_path)
    request = launch(command)
    # A starter that claimed the launch, then died before starting a supervisor.
    lock = claim(run_dir, RunSpec(request, {}, 1.0))
    assert lock is not None
    starting = await executor.query(request.launch_id)
    assert (starting.state, starting.reason) == (RunState.RUNNING, "starting")
    request_stop(run_dir, request.launch_id, 1.0)  # asked of the attempt that died
    os.close(lock)
    assert (await executor.query(request.launch_id)).state is RunState.NOT_FOUND
    started = await executor.start(request)
    assert started.state is RunState.RUNNING and started.pid is not None
    gate.touch()
    assert (await executor.wait(request.launch_id)).state is RunState.SUCCEEDED
    assert len(lines(count)) == 1


async def test_odd_launch_ids_get_their_own_runs(executor: LocalExecutor) -> None:
    ids = ["a@2026-11-24T06:00:00Z", "a@manual-20261124T060000-ab12", "../../etc",
           ".hidden", "a/b", "a%2Fb", "x" * 400, "x" * 399 + "y", "é@ü ~"]
    for launch_id in ids:
        await executor.start(launch(f"echo '{launch_id}'", launch_id=launch_id))
    for launch_id in ids:
        assert (await executor.wait(launch_id)).state is RunState.SUCCEEDED
        assert await executor.output(launch_id) == f"{launch_id}\n".encode()


async def test_a_start_cancelled_midway_still_hands_the_run_to_a_supervisor(
        executor: LocalExecutor) -> None:
    request = launch("exit 0")
    start = asyncio.create_task(executor.start(request))
    await asyncio.sleep(0)  # let it claim the launch
    start.cancel()
    with pytest.raises(asyncio.CancelledError):
        await start
    await eventually(lambda: _known(executor, request.launch_id), 10, "the launch was claimed")
    async with asyncio.timeout(10):
        assert (await executor.wait(request.launch_id)).state is RunState.SUCCEEDED


async def _known(executor: LocalExecutor, launch_id: str) -> bool:
    return (await executor.query(launch_id)).state is not RunState.NOT_FOUND


async def test_a_start_that_cannot_make_its_run_directory_raises_and_starts_nothing(
        new_executor: NewExecutor, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    executor = new_executor(tmp_path / "file" / "runs")
    with pytest.raises(ExecutorError, match="cannot start launch 'backup@"):
        await executor.start(launch("exit 0"))
