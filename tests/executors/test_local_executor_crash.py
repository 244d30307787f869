"""A replica killed mid-run learns, after restart, what became of its runs."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from distcron.executors.base import LaunchRequest, RunState, RunStatus
from distcron.executors.local import LocalExecutor
from tests.processes import gone

from .conftest import NewExecutor, gated, launch, lines, parent_of

pytestmark = pytest.mark.anyio

FAKE_REPLICA = Path(__file__).with_name("fake_replica.py")


async def _start_in_a_replica(run_dir: Path, *requests: LaunchRequest,
                              ) -> tuple[asyncio.subprocess.Process, list[RunStatus]]:
    """Start the launches in a fake replica; returns it (alive) and what it printed."""
    replica = await asyncio.create_subprocess_exec(
        sys.executable, str(FAKE_REPLICA), str(run_dir),
        *(json.dumps(request.to_dict()) for request in requests),
        stdout=asyncio.subprocess.PIPE)
    assert replica.stdout is not None
    line = await asyncio.wait_for(replica.stdout.readline(), 20)
    return replica, [RunStatus.from_dict(status) for status in json.loads(line)]


async def _kill(replica: asyncio.subprocess.Process) -> None:
    replica.kill()
    await replica.wait()


async def test_a_replica_killed_mid_run_learns_what_its_runs_did_and_starts_none_twice(
        run_dir: Path, new_executor: NewExecutor, tmp_path: Path) -> None:
    count_long, count_short = tmp_path / "count-long", tmp_path / "count-short"
    gate_long, gate_short = tmp_path / "gate-long", tmp_path / "gate-short"
    long = launch(f"echo >> '{count_long}'; " + gated(gate_long, "exit 5"),
                  launch_id="long@2026-11-24T06:00:00Z")
    short = launch(f"echo >> '{count_short}'; " + gated(gate_short, "exit 3"),
                   launch_id="short@2026-11-24T06:00:00Z")
    replica, (long_started, short_started) = await _start_in_a_replica(run_dir, long, short)
    assert long_started.state is short_started.state is RunState.RUNNING
    await _kill(replica)
    killed_at = datetime.now(UTC)

    gate_short.touch()  # the short job ends while no replica is alive
    restarted = new_executor()
    short_ended = await restarted.wait(short.launch_id)
    assert (short_ended.state, short_ended.exit_code) == (RunState.FAILED, 3)
    assert short_ended.pid == short_started.pid
    assert short_ended.ended_at is not None and short_ended.ended_at > killed_at
    assert short_ended.started_at == short_started.started_at

    long_now = await restarted.query(long.launch_id)
    assert (long_now.state, long_now.pid) == (RunState.RUNNING, long_started.pid)
    assert await restarted.start(long) == long_now
    assert await restarted.start(short) == short_ended

    gate_long.touch()
    long_ended = await restarted.wait(long.launch_id)
    assert (long_ended.state, long_ended.exit_code) == (RunState.FAILED, 5)
    assert (lines(count_long), lines(count_short)) == ([""], [""])


async def test_replicas_starting_one_launch_at_once_start_one_process_that_any_can_stop(
        run_dir: Path, new_executor: NewExecutor, tmp_path: Path) -> None:
    count = tmp_path / "count"
    request = launch(f"echo $$ >> '{count}'; " + gated(tmp_path / "never"))
    started = await asyncio.gather(*(_start_in_a_replica(run_dir, request) for _ in range(3)))
    for replica, _ in started:
        await _kill(replica)
    assert len({statuses[0].pid for _, statuses in started} - {None}) == 1
    executor = new_executor(grace=10.0)
    assert (await executor.stop(request.launch_id, grace=0.3)).state is RunState.STOPPED
    assert len(lines(count)) == 1


async def test_a_supervisor_killed_mid_run_reads_lost_not_running_forever(
        executor: LocalExecutor, tmp_path: Path) -> None:
    request = launch(gated(tmp_path / "never"))
    started = await executor.start(request)
    assert started.pid is not None
    supervisor = parent_of(started.pid)
    os.kill(supervisor, signal.SIGKILL)
    lost = await executor.wait(request.launch_id)
    assert lost.state is RunState.LOST
    assert "vanished" in lost.reason
    assert (lost.pid, lost.started_at) == (started.pid, started.started_at)
    assert await executor.stop(request.launch_id) == lost
    assert await executor.start(request) == lost  # fail closed: not started again
    os.killpg(started.pid, signal.SIGKILL)  # the orphaned job


async def test_prune_removes_ended_runs_and_never_a_live_one(
        executor: LocalExecutor, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    ended, live = launch("exit 0", launch_id="a@1"), launch(gated(gate), launch_id="a@2")
    await executor.start(ended)
    live_started = await executor.start(live)
    await executor.wait(ended.launch_id)
    removed = await executor.prune(datetime.now(UTC) + timedelta(hours=1))
    assert removed == [ended.launch_id]
    assert (await executor.query(ended.launch_id)).state is RunState.NOT_FOUND
    assert await executor.query(live.launch_id) == live_started
    assert await executor.prune(datetime.now(UTC) - timedelta(hours=1)) == []
    gate.touch()
    assert (await executor.wait(live.launch_id)).state is RunState.SUCCEEDED
    assert live_started.pid is not None and gone(live_started.pid)
