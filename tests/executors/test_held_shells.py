"""Held shells: a staged command's shell started ahead by its batch supervisor,
held at a gate, running the command only when released, exiting without
running it when let go, killed, or when its batch supervisor dies."""

from __future__ import annotations

import os
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from distcron.executors import batch, local
from distcron.executors.base import LaunchRequest, RunState, RunStatus
from distcron.executors.local import LocalExecutor
from distcron.executors.rundir import run_of
from tests.processes import gone
from tests.waiting import eventually

from .conftest import launch, lines

pytestmark = pytest.mark.anyio


def _later(seconds: float = 60) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


def _counted(count: Path, n: int) -> LaunchRequest:
    """A launch that appends its launch id to ``count``; each one's command line
    is its own, so that its held shell can be told from the others'."""
    return launch(f'echo "$DISTCRON_LAUNCH_ID" >> \'{count}\'; : {n}',
                  launch_id=f"job-{n}@2026-11-24T06:00:00Z", job=f"job-{n}")


def _statuses(results: list[RunStatus | Exception]) -> list[RunStatus]:
    assert all(isinstance(result, RunStatus) for result in results), results
    return [result for result in results if isinstance(result, RunStatus)]


def _batch_pid(run_dir: Path, request: LaunchRequest) -> int:
    pid = run_of(run_dir, request.launch_id).supervisor_pid()
    assert pid is not None
    return pid


def _children(pid: int) -> list[int]:
    return [int(child) for child in
            Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _held_shell(run_dir: Path, request: LaunchRequest) -> int:
    """The pid of the shell held for ``request`` by its batch supervisor."""
    assert request.command is not None
    for child in _children(_batch_pid(run_dir, request)):
        argv = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        if argv[:2] == [b"/bin/sh", b"-c"] and argv[2].endswith(request.command.encode()):
            return child
    raise AssertionError(f"no held shell for {request.launch_id}")


async def test_a_held_shell_runs_nothing_before_its_release_and_is_the_runs_process(
        executor: LocalExecutor, run_dir: Path, tmp_path: Path) -> None:
    seen = tmp_path / "seen"
    # The job's shell, its descriptors, and what it left of ours.
    request = launch(f'echo "$$ ${{_-none}}" > \'{seen}\'; ls /proc/$$/fd >> \'{seen}\'',
                     launch_id="held@2026-11-24T06:00:00Z", job="held")
    [staged] = _statuses(await executor.stage([request], _later()))
    assert staged.state is RunState.STAGED
    shell = _held_shell(run_dir, request)
    assert not seen.exists()

    [released] = _statuses(await executor.release([request]))
    assert released.pid == shell and released.started_at is not None
    ended = await executor.wait(request.launch_id)
    assert (ended.state, ended.pid) == (RunState.SUCCEEDED, shell)
    said, *fds = lines(seen)
    assert said == f"{shell} none"
    assert {"0", "1", "2"} <= set(fds) and str(batch.GATE_FD) not in fds  # the gate is closed


async def test_held_shells_let_go_or_orphaned_by_their_batch_exit_without_running(
        executor: LocalExecutor, run_dir: Path, tmp_path: Path) -> None:
    count = tmp_path / "count"
    requests = [_counted(count, n) for n in range(3)]
    await executor.stage(requests, _later())
    shells = [_held_shell(run_dir, request) for request in requests]
    assert len(set(shells)) == len(requests)
    supervisor = _batch_pid(run_dir, requests[0])

    await executor.unstage([requests[0].launch_id])
    await eventually(lambda: gone(shells[0]), 10, "the let go launch's shell to exit")
    assert (await executor.query(requests[0].launch_id)).state is RunState.NOT_FOUND

    os.kill(supervisor, signal.SIGKILL)
    await eventually(lambda: gone(shells[1]) and gone(shells[2]), 10,
                     "the dead batch's held shells to exit")

    async def let_go() -> bool:
        states = [(await executor.query(r.launch_id)).state for r in requests]
        return states == [RunState.NOT_FOUND] * len(requests)
    await eventually(let_go, 10, "every launch of the dead batch to read never started")
    assert not count.exists()


async def test_a_held_shell_killed_before_its_release_is_spawned_afresh_and_runs_once(
        executor: LocalExecutor, run_dir: Path, tmp_path: Path) -> None:
    count = tmp_path / "count"
    request = _counted(count, 1)
    await executor.stage([request], _later())
    shell = _held_shell(run_dir, request)
    os.kill(shell, signal.SIGKILL)
    await eventually(lambda: shell not in _children(_batch_pid(run_dir, request)), 10,
                     "the killed shell to be reaped")

    [released] = _statuses(await executor.release([request]))
    assert released.pid is not None and released.pid != shell
    assert (await executor.wait(request.launch_id)).state is RunState.SUCCEEDED
    assert lines(count) == [request.launch_id]


async def test_shells_are_held_up_to_the_limit_and_the_rest_spawned_at_release(
        executor: LocalExecutor, run_dir: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local, "PRESTART_LIMIT", batch.BATCH_SIZE)
    count = tmp_path / "count"
    requests = [_counted(count, n) for n in range(batch.BATCH_SIZE + 3)]
    argv = launch(argv=("/bin/sh", "-c", f"echo argv >> '{count}'"),
                  launch_id="argv@2026-11-24T06:00:00Z", job="argv")
    await executor.stage(requests, _later())
    await executor.stage([argv], _later())
    supervisors = {_batch_pid(run_dir, request) for request in [*requests, argv]}
    held = sorted(len(_children(pid)) for pid in supervisors)
    # The first batch holds its shells; the second (past the limit) and the
    # argv job's (not a shell line) hold none.
    assert held == [0, 0, batch.BATCH_SIZE]

    await executor.release([*requests, argv])
    for request in [*requests, argv]:
        assert (await executor.wait(request.launch_id)).state is RunState.SUCCEEDED
    assert sorted(lines(count)) == sorted([*(r.launch_id for r in requests), "argv"])
