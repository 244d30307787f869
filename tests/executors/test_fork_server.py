"""Supervisors are forks of one small fork server, which may die at any time
without a launch being lost or made twice."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import signal
import sys
from pathlib import Path

import pytest

from distcron.executors.base import LaunchRequest, RunState
from distcron.executors.forkserver import (
    FORKED,
    MODULE,
    ForkServer,
    ForkServerProcess,
    helper_env,
)
from distcron.executors.local import LocalExecutor
from distcron.executors.rundir import RunSpec, claim, run_of
from tests.processes import gone
from tests.waiting import eventually

from .conftest import (
    NewExecutor,
    fork_servers,
    gated,
    launch,
    lines,
    one_fork_server,
)
from .test_local_executor_crash import FAKE_REPLICA

pytestmark = pytest.mark.anyio


def _ledger_job(ledger: Path, then: str = "exit 0") -> str:
    """A command that appends its launch id and its supervisor's parent to
    ``ledger`` ($PPID is the supervisor), then runs ``then``."""
    return (f"read -r pid comm state forker rest < /proc/$PPID/stat; "
            f"echo \"$DISTCRON_LAUNCH_ID $forker\" >> '{ledger}'; {then}")


def _ledger(ledger: Path) -> list[tuple[str, int]]:
    return [(launch_id, int(forker)) for launch_id, forker in
            (line.split() for line in lines(ledger))]


async def test_many_concurrent_starts_each_run_once_in_forks_of_one_fork_server(
        executor: LocalExecutor, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    requests = [launch(_ledger_job(ledger), launch_id=f"burst@{n}") for n in range(200)]
    started = await asyncio.gather(*(executor.start(request) for request in requests))
    assert all(status.state in (RunState.RUNNING, RunState.SUCCEEDED) for status in started)
    ended = await asyncio.gather(*(executor.wait(request.launch_id) for request in requests))
    assert {status.state for status in ended} == {RunState.SUCCEEDED}
    ran = _ledger(ledger)
    assert sorted(launch_id for launch_id, _ in ran) == sorted(r.launch_id for r in requests)
    # No interpreter was started per launch: every supervisor is a child of the
    # executor's one fork server.
    assert {forker for _, forker in ran} == {one_fork_server(os.getpid())}


async def test_a_fork_server_killed_between_launches_is_replaced_and_nothing_runs_twice(
        executor: LocalExecutor, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    first, second = (launch(_ledger_job(ledger), launch_id=f"a@{n}") for n in (1, 2))
    await executor.start(first)
    first_ended = await executor.wait(first.launch_id)
    killed = one_fork_server(os.getpid())
    os.kill(killed, signal.SIGKILL)
    await eventually(lambda: gone(killed), 10, "the fork server is dead")

    assert (await executor.start(second)).state in (RunState.RUNNING, RunState.SUCCEEDED)
    assert (await executor.wait(second.launch_id)).state is RunState.SUCCEEDED
    assert await executor.start(first) == first_ended
    replacement = one_fork_server(os.getpid())
    assert replacement != killed
    assert _ledger(ledger) == [(first.launch_id, killed), (second.launch_id, replacement)]


async def test_launches_queued_in_a_fork_server_that_dies_are_sent_again_and_run_once(
        executor: LocalExecutor, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    await executor.start(launch("exit 0", launch_id="warm@1"))
    stuck = one_fork_server(os.getpid())
    os.kill(stuck, signal.SIGSTOP)
    await eventually(lambda: _state(stuck) == b"T", 10, "the fork server is stopped")
    try:
        requests = [launch(_ledger_job(ledger), launch_id=f"q@{n}") for n in range(10)]
        starts = [asyncio.ensure_future(executor.start(request)) for request in requests]
        # Each is sent right after it is claimed; one sent after the kill finds
        # the socket closed instead, and goes to the new fork server at once.
        for request in requests:
            await eventually(functools.partial(_claimed, executor, request.launch_id), 10,
                             f"{request.launch_id} is claimed")
    finally:
        os.kill(stuck, signal.SIGKILL)
    started = await asyncio.gather(*starts)
    assert all(status.state in (RunState.RUNNING, RunState.SUCCEEDED) for status in started)
    for request in requests:
        assert (await executor.wait(request.launch_id)).state is RunState.SUCCEEDED
    ran = _ledger(ledger)
    assert sorted(launch_id for launch_id, _ in ran) == sorted(r.launch_id for r in requests)
    assert {forker for _, forker in ran} == {one_fork_server(os.getpid())} != {stuck}


async def _claimed(executor: LocalExecutor, launch_id: str) -> bool:
    return (await executor.query(launch_id)).state is not RunState.NOT_FOUND


def _proc(pid: int, name: str) -> bytes:
    return Path(f"/proc/{pid}/{name}").read_bytes()


def _state(pid: int) -> bytes:
    stat = _proc(pid, "stat")
    return stat[stat.rindex(b")") + 2:].split()[0]


async def test_a_launch_queued_in_a_fork_server_that_dies_comes_back_unforked_and_free(
        run_dir: Path, new_executor: NewExecutor, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    request = launch(_ledger_job(ledger))
    fork_server = ForkServer(run_dir, send_timeout=5.0)
    try:
        process, ready = _hand_off(fork_server, run_dir, launch("exit 0", launch_id="w@1"))
        assert (await asyncio.to_thread(_read_all, ready)).startswith(FORKED)
        os.kill(process.pid, signal.SIGSTOP)
        await eventually(lambda: _state(process.pid) == b"T", 10, "the fork server is stopped")
        queued_in, ready = _hand_off(fork_server, run_dir, request)
        assert queued_in is process
        os.kill(process.pid, signal.SIGKILL)
        # The kernel closed the descriptors the message carried: the handshake
        # pipe says nothing, and nobody holds the run's lock.
        assert await asyncio.to_thread(_read_all, ready) == b""
    finally:
        fork_server.close()
    executor = new_executor()
    assert (await executor.query(request.launch_id)).state is RunState.NOT_FOUND
    await executor.start(request)
    assert (await executor.wait(request.launch_id)).state is RunState.SUCCEEDED
    assert len(lines(ledger)) == 1


def _hand_off(fork_server: ForkServer, run_dir: Path,
              request: LaunchRequest) -> tuple[ForkServerProcess, int]:
    """Claim the launch and send it, as the executor does, keeping nothing but
    the read end of its handshake pipe."""
    lock = claim(run_dir, RunSpec(request, {"PATH": "/usr/bin:/bin"}, 1.0))
    assert lock is not None
    ready, handshake = os.pipe()
    try:
        process = fork_server.hand_off(run_of(run_dir, request.launch_id).path, lock,
                                       handshake)
    finally:
        os.close(lock)
        os.close(handshake)
    return process, ready


def _read_all(fd: int) -> bytes:
    with os.fdopen(fd, "rb") as pipe:
        return pipe.read()


async def test_a_killed_replica_takes_its_fork_server_along_and_its_runs_live_on(
        run_dir: Path, new_executor: NewExecutor, tmp_path: Path) -> None:
    gate, ledger = tmp_path / "gate", tmp_path / "ledger"
    request = launch(_ledger_job(ledger, then=gated(gate)))
    replica = await asyncio.create_subprocess_exec(
        sys.executable, str(FAKE_REPLICA), str(run_dir), json.dumps(request.to_dict()),
        stdout=asyncio.subprocess.PIPE)
    assert replica.stdout is not None
    await asyncio.wait_for(replica.stdout.readline(), 20)
    fork_server = one_fork_server(replica.pid)
    replica.kill()
    await replica.wait()
    await eventually(lambda: gone(fork_server), 10, "the fork server is gone")

    adopter = new_executor()
    assert (await adopter.query(request.launch_id)).state is RunState.RUNNING
    gate.touch()
    assert (await adopter.wait(request.launch_id)).state is RunState.SUCCEEDED
    assert _ledger(ledger) == [(request.launch_id, fork_server)]
    assert fork_servers(os.getpid()) == []  # adopting a run starts no fork server


async def test_the_fork_server_holds_no_secret_no_inherited_descriptor_and_no_session(
        new_executor: NewExecutor, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISTCRON_TOKEN", "s3cret-token")
    executor = new_executor()
    await executor.start(launch("exit 0"))
    pid = one_fork_server(os.getpid())
    environ = _proc(pid, "environ").split(b"\0")
    assert [entry for entry in environ if entry] == [
        f"{key}={value}".encode() for key, value in helper_env().items()]
    descriptors = {int(fd): os.readlink(f"/proc/{pid}/fd/{fd}")
                   for fd in os.listdir(f"/proc/{pid}/fd")}
    assert descriptors[0] == descriptors[1] == "/dev/null"
    assert [target for fd, target in descriptors.items() if fd > 2] == [
        target for target in descriptors.values() if target.startswith("socket:")]
    assert len([fd for fd in descriptors if fd > 2]) == 1
    assert os.getsid(pid) == pid
    assert MODULE.encode() in _proc(pid, "cmdline")
    await executor.close()
    assert gone(pid)
