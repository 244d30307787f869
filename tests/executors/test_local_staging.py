"""Staged launches: prepared ahead of their slot by batch supervisors, started
only when released, let go (never started) otherwise."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from distcron.executors import batch
from distcron.executors.base import LaunchRequest, RunState, RunStatus
from distcron.executors.local import LocalExecutor
from distcron.executors.rundir import run_of
from tests.waiting import eventually

from .conftest import NewExecutor, gated, launch, lines

pytestmark = pytest.mark.anyio

FAKE_REPLICA = Path(__file__).with_name("fake_replica.py")


def _later(seconds: float = 60) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


def _counted(count: Path, then: str = "exit 0", n: int = 0) -> LaunchRequest:
    """A launch that appends its launch id to ``count`` when it runs."""
    return launch(f'echo "$DISTCRON_LAUNCH_ID" >> \'{count}\'; {then}',
                  launch_id=f"job-{n}@2026-11-24T06:00:00Z", job=f"job-{n}")


def _statuses(results: list[RunStatus | Exception]) -> list[RunStatus]:
    assert all(isinstance(result, RunStatus) for result in results), results
    return [result for result in results if isinstance(result, RunStatus)]


async def test_a_staged_launch_runs_nothing_until_released_then_runs_once(
        executor: LocalExecutor, tmp_path: Path) -> None:
    count = tmp_path / "count"
    requests = [_counted(count, f"exit {n}", n) for n in range(3)]
    staged = _statuses(await executor.stage(requests, _later()))
    assert {status.state for status in staged} == {RunState.STAGED}
    assert (await executor.query(requests[0].launch_id)).state is RunState.STAGED
    assert not count.exists()

    released = _statuses(await executor.release(requests))
    # Running, or (these are quick) ended already: started either way.
    assert all(s.state is not RunState.STAGED and s.pid and s.started_at for s in released)
    ended = [await executor.wait(request.launch_id) for request in requests]
    assert [(s.state, s.exit_code) for s in ended] == [
        (RunState.SUCCEEDED, 0), (RunState.FAILED, 1), (RunState.FAILED, 2)]
    # Released, started or staged again: each ran once.
    again = _statuses(await executor.release(requests))
    assert [s.state for s in again] == [s.state for s in ended]
    await executor.start(requests[0])
    await executor.stage(requests, _later())
    assert sorted(lines(count)) == sorted(request.launch_id for request in requests)


async def test_staging_twice_stages_once(executor: LocalExecutor, tmp_path: Path) -> None:
    count = tmp_path / "count"
    request = _counted(count)
    await executor.stage([request], _later())
    [again] = _statuses(await executor.stage([request], _later()))
    assert again.state is RunState.STAGED
    await executor.release([request])
    assert (await executor.wait(request.launch_id)).state is RunState.SUCCEEDED
    assert lines(count) == [request.launch_id]


async def test_an_unstaged_launch_never_runs_and_a_later_start_runs_it_once(
        executor: LocalExecutor, tmp_path: Path) -> None:
    count = tmp_path / "count"
    kept, dropped = _counted(count, n=1), _counted(count, n=2)
    await executor.stage([kept, dropped], _later())
    await executor.unstage([dropped.launch_id])

    async def let_go() -> bool:
        return (await executor.query(dropped.launch_id)).state is RunState.NOT_FOUND
    await eventually(let_go, 10, "the unstaged launch to be let go")
    assert (await executor.query(kept.launch_id)).state is RunState.STAGED
    await executor.release([kept])
    await executor.wait(kept.launch_id)
    assert lines(count) == [kept.launch_id]

    started = await executor.start(dropped)  # its job was put back, say
    assert started.state is not RunState.NOT_FOUND and started.pid
    await executor.wait(dropped.launch_id)
    assert sorted(lines(count)) == [kept.launch_id, dropped.launch_id]


async def test_a_launch_not_released_by_its_deadline_is_let_go_unstarted(
        executor: LocalExecutor, tmp_path: Path) -> None:
    count = tmp_path / "count"
    request = _counted(count)
    await executor.stage([request], _later(0.3))

    async def let_go() -> bool:
        return (await executor.query(request.launch_id)).state is RunState.NOT_FOUND
    await eventually(let_go, 10, "the launch to be let go at its deadline")
    assert not count.exists()
    # A late release starts it as a start would: once.
    [released] = _statuses(await executor.release([request]))
    assert released.state is not RunState.STAGED and released.pid
    assert (await executor.wait(request.launch_id)).state is RunState.SUCCEEDED
    assert lines(count) == [request.launch_id]


async def test_what_a_killed_replica_staged_is_released_by_the_next_once(
        run_dir: Path, new_executor: NewExecutor, tmp_path: Path) -> None:
    count = tmp_path / "count"
    requests = [_counted(count, n=n) for n in range(3)]
    replica = await asyncio.create_subprocess_exec(
        sys.executable, str(FAKE_REPLICA), str(run_dir), "--stage",
        *(json.dumps(request.to_dict()) for request in requests),
        stdout=asyncio.subprocess.PIPE)
    assert replica.stdout is not None
    staged = json.loads(await asyncio.wait_for(replica.stdout.readline(), 30))
    assert {status["state"] for status in staged} == {"staged"}
    replica.kill()
    await replica.wait()

    successor = new_executor()
    assert (await successor.query(requests[0].launch_id)).state is RunState.STAGED
    assert not count.exists()  # staged, its stager dead: nothing ran
    released = _statuses(await successor.release(requests))
    assert all(status.state is not RunState.STAGED and status.pid for status in released)
    for request in requests:
        assert (await successor.wait(request.launch_id)).state is RunState.SUCCEEDED
    assert sorted(lines(count)) == sorted(request.launch_id for request in requests)


async def test_a_killed_batch_supervisor_leaves_its_started_runs_lost_and_the_rest_unstarted(
        executor: LocalExecutor, run_dir: Path, tmp_path: Path) -> None:
    count, gate = tmp_path / "count", tmp_path / "gate"
    started = _counted(count, gated(gate), n=1)
    waiting = _counted(count, n=2)
    await executor.stage([started, waiting], _later())
    await executor.release([started])
    await eventually(lambda: lines(count) == [started.launch_id], 10, "the released job")
    pid = run_of(run_dir, waiting.launch_id).supervisor_pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)

    async def settled() -> tuple[RunState, RunState]:
        return ((await executor.query(started.launch_id)).state,
                (await executor.query(waiting.launch_id)).state)
    await eventually(lambda: _is(settled, (RunState.LOST, RunState.NOT_FOUND)), 10,
                     "the started run LOST and the staged one NOT_FOUND")
    gate.touch()
    [again] = _statuses(await executor.release([waiting]))  # never started: starts now
    assert again.state is not RunState.STAGED and again.pid
    await executor.wait(waiting.launch_id)
    assert sorted(lines(count)) == [started.launch_id, waiting.launch_id]


async def _is(probe: object, expected: object) -> bool:
    assert callable(probe)
    return bool(await probe() == expected)


async def test_a_batch_times_out_stops_and_reports_its_jobs_like_one_supervisor(
        executor: LocalExecutor, tmp_path: Path) -> None:
    gate = tmp_path / "never"
    slow = launch(gated(gate), launch_id="slow@1", job="slow", timeout=0.5)
    stopped = launch(gated(gate), launch_id="stopped@1", job="stopped")
    chatty = launch("echo out; echo err >&2; exit 3", launch_id="chatty@1", job="chatty")
    missing = launch(argv=("no-such-program-here",), launch_id="missing@1", job="missing")
    nowhere = launch("true", launch_id="nowhere@1", job="nowhere",
                     workdir=str(tmp_path / "no-such-dir"))
    requests = [slow, stopped, chatty, missing, nowhere]
    await executor.stage(requests, _later())
    await executor.release(requests)
    stop = await executor.stop(stopped.launch_id, grace=0.2)
    assert (stop.state, stop.reason) == (RunState.STOPPED, "stopped on request")
    timed_out = await executor.wait(slow.launch_id)
    assert (timed_out.state, timed_out.reason) == (RunState.TIMED_OUT, "timed out after 0.5s")
    ended = await executor.wait(chatty.launch_id)
    assert (ended.state, ended.exit_code) == (RunState.FAILED, 3)
    assert await executor.output(chatty.launch_id) == b"out\nerr\n"
    not_run = await executor.wait(missing.launch_id)
    assert (not_run.state, not_run.exit_code) == (RunState.FAILED, 127)
    no_dir = await executor.wait(nowhere.launch_id)
    assert no_dir.state is RunState.FAILED and "cannot enter workdir" in no_dir.reason


async def test_many_launches_are_staged_in_batches_and_each_runs_once(
        executor: LocalExecutor, tmp_path: Path) -> None:
    count = tmp_path / "count"
    requests = [_counted(count, n=n) for n in range(batch.BATCH_SIZE * 2 + 5)]
    staged = _statuses(await executor.stage(requests, _later()))
    assert {status.state for status in staged} == {RunState.STAGED}
    released = _statuses(await executor.release(requests))
    assert {status.state for status in released} <= {RunState.RUNNING, RunState.SUCCEEDED}
    for request in requests:
        assert (await executor.wait(request.launch_id)).state is RunState.SUCCEEDED
    assert sorted(lines(count)) == sorted(request.launch_id for request in requests)


async def test_a_launch_staged_for_another_incarnation_of_the_store_is_staged_again_for_this(
        executor: LocalExecutor, tmp_path: Path) -> None:
    seen = tmp_path / "seen"
    old = launch(f'echo "$DISTCRON_STORE_ID $DISTCRON_FENCE" >> \'{seen}\'',
                 launch_id="tick@2026-11-24T06:00:00Z", job="tick")
    old = dataclasses.replace(old, store_id="old-file", fence=7)
    new = dataclasses.replace(old, store_id="new-file", fence=3)
    await executor.stage([old], _later())
    [again] = _statuses(await executor.stage([new], _later()))
    assert again.state is RunState.STAGED
    await executor.release([new])
    assert (await executor.wait(new.launch_id)).state is RunState.SUCCEEDED
    assert lines(seen) == ["new-file 3"]  # once, under this store's identity and fence
