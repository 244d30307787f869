"""A staging or a release cancelled part way (the leader's term ended under it)
leaves nothing held: the next term's release runs each launch once, promptly."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from distcron.errors import ExecutorError
from distcron.executors import rundir
from distcron.executors.base import LaunchRequest, RunState
from distcron.executors.local import LocalExecutor
from tests.waiting import eventually

from .conftest import launch, lines

pytestmark = pytest.mark.anyio


def _counted(count: Path, n: int) -> LaunchRequest:
    return launch(f'echo "$DISTCRON_LAUNCH_ID" >> \'{count}\'',
                  launch_id=f"job-{n}@2026-11-24T06:00:00Z", job=f"job-{n}")


@pytest.mark.parametrize("after", [0.0, 0.001, 0.003, 0.01, 0.03, 0.1])
async def test_a_staging_cancelled_part_way_is_released_and_runs_once(
        executor: LocalExecutor, tmp_path: Path, after: float) -> None:
    count = tmp_path / "count"
    requests = [_counted(count, n) for n in range(3)]
    staging = asyncio.ensure_future(
        executor.stage(requests, datetime.now(UTC) + timedelta(seconds=60)))
    await asyncio.sleep(after)
    staging.cancel()
    await asyncio.gather(staging, return_exceptions=True)

    async with asyncio.timeout(15):
        released = await executor.release(requests)
    assert all(not isinstance(r, Exception) and r.state is not RunState.STAGED
               for r in released), released

    async def all_ran() -> bool:
        return sorted(lines(count)) == sorted(r.launch_id for r in requests)
    await eventually(all_ran, 10, "each launch to run")
    for request in requests:
        assert (await executor.wait(request.launch_id)).state is RunState.SUCCEEDED
    assert sorted(lines(count)) == sorted(r.launch_id for r in requests)


async def test_a_start_of_a_launch_held_staged_by_no_batch_it_can_tell_fails_promptly(
        executor: LocalExecutor, tmp_path: Path) -> None:
    # Claimed for a batch that never forked (its stager holds the lock yet):
    # the start cannot tell anyone to start it, and says so, without looping.
    request = _counted(tmp_path / "count", 0)
    spec = rundir.RunSpec(request, {}, 0.3)
    lock_fd = rundir.claim(executor.run_dir, spec, durable=False, batch="batch-gone")
    assert lock_fd is not None
    try:
        assert (await executor.query(request.launch_id)).state is RunState.STAGED
        async with asyncio.timeout(10):
            with pytest.raises(ExecutorError, match="could not be told to start it"):
                await executor.start(request)
    finally:
        os.close(lock_fd)
    assert not (tmp_path / "count").exists()
