"""The supervisor of one launch: ``python -m distcron.executors.supervisor RUN_DIR``.

Started by :class:`~distcron.executors.local.LocalExecutor` with the run's lock
descriptor inherited (see :mod:`distcron.executors.rundir`), it forks once and
lets its parent exit, so that it is no replica's child: a replica that dies,
even by SIGKILL, leaves it running, and no replica ever has to reap it. It
then starts the job in a new session (the job leads its own process group),
copies the job's stdout and stderr (one pipe, so they interleave as written)
into the bounded output files, enforces the timeout, obeys ``stop``, and writes
``status.json`` when the job has ended.

Handshake: the starter reads our stdout, a pipe, until EOF. We write ``ready``
once the job is started (or known not to start), then point stdout at our log,
which closes the pipe: from then on nothing ties us to the replica.

On failure:

- Timeout, or SIGTERM from ``stop``: SIGTERM to the job's process group, and
  SIGKILL to it when the grace period ends with any member left, so children
  and grandchildren go too. The state is ``TIMED_OUT`` or ``STOPPED``.
- The job cannot be executed (no such command, no workdir): the run ends
  ``FAILED`` without running, with exit code 127 (not found) or 126 (not
  executable) as a shell would say, or no exit code when the workdir is at fault.
- The supervisor itself fails (a bug, a full disk when writing ``status.json``):
  it kills the job's process group rather than leave it unsupervised, logs the
  traceback to ``supervisor.log`` and exits without a status: the run reads
  ``LOST``. SIGKILL of the supervisor leaves the job running, orphaned; the run
  reads ``LOST`` too.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from distcron.executors.base import LaunchRequest, RunState, RunStatus
from distcron.executors.output import OutputRing
from distcron.executors.rundir import JOB, STATUS, STOP, SUPERVISOR, RunDir, RunSpec

log = logging.getLogger("distcron.supervisor")

CHUNK = 64 * 1024
# After the job has exited, how long to keep reading output that background
# processes it left behind may still be writing to the shared pipe.
DRAIN_SECONDS = 1.0
GROUP_POLL_SECONDS = 0.05


class Handshake:
    """Tells the starter, once, that the job is started or will never be."""

    def __init__(self) -> None:
        self.done = False

    def release(self) -> None:
        if self.done:
            return
        self.done = True
        with contextlib.suppress(BrokenPipeError):  # the starter may be dead
            os.write(1, b"ready\n")
        os.dup2(2, 1)


class EarlyStop:
    """Remembers a SIGTERM that arrives before the event loop handles it."""

    def __init__(self) -> None:
        self.requested = False

    def handle(self, signum: int, frame: object) -> None:
        self.requested = True


def main(argv: Sequence[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m distcron.executors.supervisor RUN_DIR", file=sys.stderr)
        return 2
    if os.fork() != 0:
        os._exit(0)  # the starter reaps this parent at once; the child is nobody's
    early = EarlyStop()
    signal.signal(signal.SIGTERM, early.handle)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s")
    run = RunDir(Path(args[0]))
    spec = run.spec()
    if spec is None:
        log.error("event=no_request run_dir=%s", run.path)
        return 1
    handshake = Handshake()
    # Written before the job can start: a run without it was never started.
    run.write_json(SUPERVISOR, {"pid": os.getpid()})
    status = asyncio.run(supervise(run, spec, handshake, early))
    run.write_json(STATUS, status.to_dict())
    handshake.release()
    log.info("event=run_ended launch_id=%s state=%s exit_code=%s signal=%s",
             status.launch_id, status.state.value, status.exit_code, status.signal)
    return 0


async def supervise(run: RunDir, spec: RunSpec, handshake: Handshake,
                    early: EarlyStop) -> RunStatus:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    request = spec.request
    if early.requested or (run.path / STOP).exists():
        return RunStatus(request.launch_id, RunState.STOPPED,
                         reason="stopped before the job started")
    try:
        proc = await asyncio.create_subprocess_exec(
            *_argv(request), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            cwd=spec.workdir(), env=spec.job_env(), start_new_session=True)
    except OSError as exc:
        return _not_executed(request, spec.workdir(), exc)
    running = RunStatus(request.launch_id, RunState.RUNNING, pid=proc.pid,
                        started_at=datetime.now(UTC))
    try:
        run.write_json(JOB, running.to_dict())
        handshake.release()
        log.info("event=job_started launch_id=%s pid=%d", request.launch_id, proc.pid)
        assert proc.stdout is not None
        pump = asyncio.create_task(
            _pump(proc.stdout, OutputRing(run, request.output_limit, request.launch_id)))
        cause = await _until_end(proc, stop, request.timeout)
        if cause is not None:
            grace = _stop_grace(run, spec) if cause is RunState.STOPPED else spec.grace
            log.info("event=job_terminating launch_id=%s cause=%s grace=%s",
                     request.launch_id, cause.value, grace)
            await _end_group(proc, grace)
        await _drain(pump)
    except BaseException:
        _signal_group(proc.pid, signal.SIGKILL)
        raise
    assert proc.returncode is not None
    return _ended(running, proc.returncode, cause, request.timeout)


def _argv(request: LaunchRequest) -> tuple[str, ...]:
    if request.argv is not None:
        return request.argv
    assert request.command is not None
    return ("/bin/sh", "-c", request.command)


def _not_executed(request: LaunchRequest, workdir: str, exc: OSError) -> RunStatus:
    now = datetime.now(UTC)
    if exc.filename == workdir:
        return RunStatus(request.launch_id, RunState.FAILED, ended_at=now,
                         reason=f"cannot enter workdir {workdir!r}: {exc.strerror}")
    program = _argv(request)[0]
    return RunStatus(request.launch_id, RunState.FAILED, ended_at=now,
                     exit_code=127 if isinstance(exc, FileNotFoundError) else 126,
                     reason=f"cannot execute {program!r}: {exc.strerror}")


async def _pump(stream: asyncio.StreamReader, ring: OutputRing) -> None:
    with ring:
        while chunk := await stream.read(CHUNK):
            ring.write(chunk)


async def _until_end(proc: asyncio.subprocess.Process, stop: asyncio.Event,
                     time_limit: float | None) -> RunState | None:
    """None when the job exits by itself; otherwise why it must be ended."""
    exited = asyncio.ensure_future(proc.wait())
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({exited, stopping}, timeout=time_limit,
                           return_when=asyncio.FIRST_COMPLETED)
    finally:
        exited.cancel()
        stopping.cancel()
    if proc.returncode is not None:
        return None
    return RunState.STOPPED if stop.is_set() else RunState.TIMED_OUT


def _stop_grace(run: RunDir, spec: RunSpec) -> float:
    request = run.read_json(STOP)
    return spec.grace if request is None else float(request["grace"])


async def _end_group(proc: asyncio.subprocess.Process, grace: float) -> None:
    """SIGTERM to the job's whole group; SIGKILL to whatever is left after ``grace``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    _signal_group(proc.pid, signal.SIGTERM)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(proc.wait(), grace)
    # The job is gone; its children get what is left of the grace period. No
    # event says "the group is empty" (they are not our children): poll.
    while _group_alive(proc.pid) and loop.time() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(GROUP_POLL_SECONDS)
    _signal_group(proc.pid, signal.SIGKILL)
    await proc.wait()


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signum)


def _group_alive(pgid: int) -> bool:
    """Whether any process of the group is alive. Zombies don't count: they are
    dead and wait only for their parent to reap them, and an init that reaps
    orphans slowly (some container inits take seconds) must not stretch the
    grace period. Reads /proc, so Linux only, like the rest of this executor."""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as file:
                stat = file.read()
        except OSError:  # it ended while we looked
            continue
        # After "pid (comm) ": state, ppid, pgrp, ... (comm may hold spaces and ")").
        state, _ppid, pgrp = stat[stat.rindex(b")") + 2:].split()[:3]
        if int(pgrp) == pgid and state != b"Z":
            return True
    return False


async def _drain(pump: asyncio.Task[None]) -> None:
    # Background processes the job left behind may hold its pipe open for
    # hours: take what is there, don't wait for them.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(pump, DRAIN_SECONDS)


def _ended(running: RunStatus, returncode: int, cause: RunState | None,
           timeout: float | None) -> RunStatus:
    if returncode >= 0:
        exit_code, signum = returncode, None
        reason = "" if returncode == 0 else f"exit code {returncode}"
    else:
        exit_code, signum = None, -returncode
        reason = f"killed by {_signal_name(signum)}"
    if cause is RunState.TIMED_OUT:
        reason = f"timed out after {timeout:g}s"
    elif cause is RunState.STOPPED:
        reason = "stopped on request"
    state = cause or (RunState.SUCCEEDED if returncode == 0 else RunState.FAILED)
    return dataclasses.replace(running, state=state, exit_code=exit_code, signal=signum,
                               ended_at=datetime.now(UTC), reason=reason)


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:  # a real-time signal has no name
        return f"signal {signum}"


if __name__ == "__main__":
    sys.exit(main())
