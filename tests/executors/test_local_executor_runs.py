"""What a launched job sees, how it ends, and what it printed."""

from __future__ import annotations

import asyncio
import os
import signal
from dataclasses import replace
from pathlib import Path

import pytest

from distcron.executors.base import RunState
from distcron.executors.local import DEFAULT_PATH, LocalExecutor
from distcron.executors.output import OUTPUT, OUTPUT_OLD
from distcron.executors.rundir import run_of

from .conftest import NewExecutor, launch

pytestmark = pytest.mark.anyio


def _env(output: bytes) -> dict[str, str]:
    return dict(line.split("=", 1) for line in output.decode().splitlines() if "=" in line)


async def test_a_job_finds_its_launch_variables_its_env_and_a_sane_base(
        executor: LocalExecutor) -> None:
    request = replace(launch(argv=("env",), env={"COLOR": "blue", "DISTCRON_JOB": "forged"}),
                      store_id="6d1f9a2e-store")
    await executor.start(request)
    status = await executor.wait(request.launch_id)
    env = _env(await executor.output(request.launch_id))
    assert status.state is RunState.SUCCEEDED
    assert env["DISTCRON_JOB"] == "backup"  # a job's env cannot fake the launch's own
    assert env["DISTCRON_LAUNCH_ID"] == "backup@2026-11-24T06:00:00Z"
    assert env["DISTCRON_SLOT"] == "2026-11-24T06:00:00Z"
    assert env["DISTCRON_FENCE"] == "42"
    assert env["DISTCRON_STORE_ID"] == "6d1f9a2e-store"
    assert env["COLOR"] == "blue"
    assert env["PATH"] == DEFAULT_PATH  # the same on every replica, not the replica's
    assert {"HOME", "USER", "LOGNAME", "SHELL", "LANG"} <= env.keys()


async def test_a_run_started_by_hand_has_an_empty_slot(executor: LocalExecutor) -> None:
    request = launch(argv=("env",), slot=None)
    await executor.start(request)
    await executor.wait(request.launch_id)
    assert _env(await executor.output(request.launch_id))["DISTCRON_SLOT"] == ""


async def test_the_replicas_environment_and_api_token_reach_neither_job_nor_supervisor(
        executor: LocalExecutor, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISTCRON_TOKEN", "s3cret-token")
    monkeypatch.setenv("REPLICA_ONLY", "s3cret-other")
    # $PPID is the supervisor: its environment is shown too.
    request = launch("env; tr '\\0' '\\n' < /proc/$PPID/environ")
    await executor.start(request)
    status = await executor.wait(request.launch_id)
    output = await executor.output(request.launch_id)
    assert status.state is RunState.SUCCEEDED
    assert b"PYTHONPATH=" in output  # the supervisor's environment was read
    assert b"s3cret" not in output
    assert b"DISTCRON_TOKEN" not in output


async def test_a_job_runs_in_its_workdir_or_else_in_home(
        executor: LocalExecutor, new_executor: NewExecutor, tmp_path: Path) -> None:
    here = launch("pwd", launch_id="a@1", workdir=str(tmp_path))
    await executor.start(here)
    home = tmp_path / "home"
    home.mkdir()
    elsewhere = new_executor(base_env={"PATH": "/usr/bin:/bin", "HOME": str(home)})
    default = launch("pwd", launch_id="a@2")
    await elsewhere.start(default)
    await executor.wait(here.launch_id)
    await executor.wait(default.launch_id)
    assert await executor.output(here.launch_id) == f"{tmp_path}\n".encode()
    assert await executor.output(default.launch_id) == f"{home}\n".encode()


async def test_a_command_goes_through_sh_and_argv_does_not(executor: LocalExecutor) -> None:
    shell = launch("echo $DISTCRON_FENCE", launch_id="a@1")
    direct = launch(argv=("echo", "$DISTCRON_FENCE", "two words"), launch_id="a@2")
    for request in (shell, direct):
        await executor.start(request)
        await executor.wait(request.launch_id)
    assert await executor.output(shell.launch_id) == b"42\n"
    assert await executor.output(direct.launch_id) == b"$DISTCRON_FENCE two words\n"


@pytest.mark.parametrize(("command", "state", "exit_code", "signal"), [
    ("exit 0", RunState.SUCCEEDED, 0, None),
    ("exit 3", RunState.FAILED, 3, None),
    ("kill -KILL $$", RunState.FAILED, None, 9),
])
async def test_the_exit_code_or_killing_signal_decides_the_outcome(
        executor: LocalExecutor, command: str, state: RunState, exit_code: int | None,
        signal: int | None) -> None:
    request = launch(command)
    started = await executor.start(request)
    status = await executor.wait(request.launch_id)
    assert (status.state, status.exit_code, status.signal) == (state, exit_code, signal)
    assert status.pid == started.pid
    assert started.started_at is not None and status.ended_at is not None
    assert started.started_at <= status.ended_at


async def test_a_command_not_found_fails_with_127(executor: LocalExecutor) -> None:
    request = launch("no-such-command-5f2c")
    await executor.start(request)
    status = await executor.wait(request.launch_id)
    assert (status.state, status.exit_code) == (RunState.FAILED, 127)
    assert b"not found" in await executor.output(request.launch_id)


async def test_an_argv_that_cannot_be_executed_is_a_failed_run_not_an_error(
        executor: LocalExecutor, tmp_path: Path) -> None:
    not_executable = tmp_path / "script.sh"
    not_executable.write_text("echo hi\n")
    missing = launch(argv=(str(tmp_path / "missing"),), launch_id="a@1")
    denied = launch(argv=(str(not_executable),), launch_id="a@2")
    missing_status = await executor.start(missing)
    denied_status = await executor.start(denied)
    assert (missing_status.state, missing_status.exit_code) == (RunState.FAILED, 127)
    assert (denied_status.state, denied_status.exit_code) == (RunState.FAILED, 126)
    assert "missing" in missing_status.reason and missing_status.pid is None


async def test_a_missing_workdir_is_a_failed_run_that_says_so(
        executor: LocalExecutor, tmp_path: Path) -> None:
    request = launch("echo hi", workdir=str(tmp_path / "nowhere"))
    status = await executor.start(request)
    assert status.state is RunState.FAILED
    assert status.exit_code is None and status.pid is None
    assert "workdir" in status.reason and "nowhere" in status.reason
    assert await executor.wait(request.launch_id) == status


async def test_only_the_last_64_kib_of_a_chatty_job_are_kept_on_disk_and_returned(
        executor: LocalExecutor, run_dir: Path) -> None:
    request = launch("seq 1 170000")  # over 1 MiB
    await executor.start(request)
    status = await executor.wait(request.launch_id)
    expected = b"".join(b"%d\n" % i for i in range(1, 170001))
    assert len(expected) > 1024 * 1024
    assert status.state is RunState.SUCCEEDED
    assert await executor.output(request.launch_id) == expected[-65536:]
    run = run_of(run_dir, request.launch_id)
    on_disk = sum((run.path / name).stat().st_size for name in (OUTPUT, OUTPUT_OLD))
    assert on_disk <= 3 * 65536  # two segments, the current one at most a chunk over


async def test_a_request_can_keep_less_output(executor: LocalExecutor) -> None:
    request = launch("seq 1 1000", output_limit=10)
    await executor.start(request)
    await executor.wait(request.launch_id)
    assert await executor.output(request.launch_id) == b"\n998\n999\n1000\n"[-10:]


async def test_stdout_and_stderr_are_interleaved_as_written(executor: LocalExecutor) -> None:
    request = launch("echo out1; echo err1 >&2; echo out2; echo err2 >&2")
    await executor.start(request)
    await executor.wait(request.launch_id)
    assert await executor.output(request.launch_id) == b"out1\nerr1\nout2\nerr2\n"


async def test_a_run_ends_when_the_job_exits_even_if_its_children_hold_its_output(
        executor: LocalExecutor) -> None:
    request = launch("sleep 30 & echo $!; echo done")
    await executor.start(request)
    async with asyncio.timeout(5):
        status = await executor.wait(request.launch_id)
    output = await executor.output(request.launch_id)
    os.kill(int(output.split()[0]), signal.SIGKILL)
    assert status.state is RunState.SUCCEEDED
    assert output.endswith(b"\ndone\n")


async def test_an_unknown_launch_is_not_found_and_has_no_output(
        executor: LocalExecutor) -> None:
    for status in (await executor.query("nope@1"), await executor.wait("nope@1"),
                   await executor.stop("nope@1")):
        assert status.state is RunState.NOT_FOUND
    assert await executor.output("nope@1") == b""
