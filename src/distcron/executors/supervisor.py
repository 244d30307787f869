"""The supervisor of one launch: a fork of the fork server that lives for the run.

Forked by :mod:`distcron.executors.forkserver` with the run's lock descriptor,
in a session of its own, it is no replica's child: a replica that dies, even by
SIGKILL, leaves it running, and no replica ever has to reap it. :func:`run`
then starts the job (:mod:`distcron.executors.job`), copies its output into the
bounded output files, enforces the timeout, obeys ``stop``, and writes
``status.json`` when the job's process has exited.

Handshake: the starter reads a pipe, our stdout, until EOF (we wrote ``forked``
on it as soon as we were forked). We write ``ready`` once the job is started (or
known not to start), then point stdout at our log, which closes the pipe: from
then on nothing ties us to the replica.

On failure:

- Timeout, or SIGTERM from ``stop``: SIGTERM to the job's process group, and
  SIGKILL to it when the grace period ends with any member left, so children
  and grandchildren go too. The state is ``TIMED_OUT`` or ``STOPPED``.
- The job cannot be executed (no such command, no workdir): the run ends
  ``FAILED`` without running, with exit code 127 (not found) or 126 (not
  executable) as a shell would say, or no exit code when the workdir is at fault.
- The supervisor itself fails while the job runs (a bug, a full disk): it
  kills the job's process group rather than leave it unsupervised, logs the
  traceback to ``supervisor.log`` and exits without a status, so the run reads
  ``LOST``; so does a run whose ``status.json`` could not be written. SIGKILL
  of the supervisor leaves the job running, orphaned; the run reads ``LOST``.
  If it fails before ``supervisor.json`` is written, the run reads as never
  started (the traceback is in ``supervisor.log``, or in the fork server's
  stderr if the log could not be opened).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import time
from datetime import UTC, datetime
from pathlib import Path

from distcron.executors.base import LaunchRequest, RunState, RunStatus
from distcron.executors.job import Job
from distcron.executors.output import OutputRing
from distcron.executors.rundir import JOB, LOG, STATUS, STOP, SUPERVISOR, RunDir, RunSpec
from distcron.logs import setup_logging

log = logging.getLogger("distcron.supervisor")

# After the job has exited, how long to keep reading output that background
# processes it left behind may still be writing to the shared pipe.
DRAIN_SECONDS = 1.0
GROUP_POLL_SECONDS = 0.05
READY = b"ready\n"


class Handshake:
    """Tells the starter, once, that the job is started or will never be."""

    def __init__(self) -> None:
        self.done = False

    def release(self) -> None:
        if self.done:
            return
        self.done = True
        with contextlib.suppress(BrokenPipeError):  # the starter may be dead
            os.write(1, READY)
        os.dup2(2, 1)


class StopSignal:
    """Remembers a SIGTERM (from ``stop``), whenever it comes."""

    def __init__(self) -> None:
        self.requested = False

    def handle(self, signum: int, frame: object) -> None:
        self.requested = True


def run(run_path: Path, handshake_fd: int) -> int:
    """Supervise the launch in ``run_path``, in this process: a fresh fork that
    holds the run's lock and will exit when this returns. ``handshake_fd`` is the
    write end of the starter's handshake pipe. Returns the exit code."""
    stop = StopSignal()
    signal.signal(signal.SIGTERM, stop.handle)
    _take_streams(run_path, handshake_fd)
    setup_logging()  # stderr is the run's supervisor.log now
    run_dir = RunDir(run_path)
    spec = run_dir.spec()
    if spec is None:
        log.error("event=no_request run_dir=%s", run_dir.path)
        return 1
    handshake = Handshake()
    # Written before the job can start: a run without it was never started.
    run_dir.write_json(SUPERVISOR, {"pid": os.getpid()})
    status = supervise(run_dir, spec, handshake, stop)
    run_dir.write_json(STATUS, status.to_dict())
    handshake.release()
    log.info("event=run_ended launch_id=%s state=%s exit_code=%s signal=%s",
             status.launch_id, status.state.value, status.exit_code, status.signal)
    return 0


def _take_streams(run_path: Path, handshake_fd: int) -> None:
    """stdout: the handshake pipe; stderr: the run's log; cwd: the run directory."""
    log_fd = os.open(run_path / LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                     0o600)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    os.dup2(handshake_fd, 1)
    os.close(handshake_fd)
    os.chdir(run_path)


def supervise(run: RunDir, spec: RunSpec, handshake: Handshake,
              stop: StopSignal) -> RunStatus:
    request = spec.request
    if stop.requested or (run.path / STOP).exists():
        return RunStatus(request.launch_id, RunState.STOPPED,
                         reason="stopped before the job started")
    ring = OutputRing(run, request.output_limit, request.launch_id)
    try:
        job = Job.spawn(argv_of(request), spec.job_env(), spec.workdir(), ring)
    except OSError as exc:
        ring.close()
        return not_executed(request, spec.workdir(), exc)
    running = RunStatus(request.launch_id, RunState.RUNNING, pid=job.pid,
                        started_at=datetime.now(UTC))
    try:
        run.write_json(JOB, running.to_dict())
        handshake.release()
        log.info("event=job_started launch_id=%s pid=%d", request.launch_id, job.pid)
        cause = _until_end(job, stop, request.timeout)
        if cause is not None:
            grace = _stop_grace(run, spec) if cause is RunState.STOPPED else spec.grace
            log.info("event=job_terminating launch_id=%s cause=%s grace=%s",
                     request.launch_id, cause.value, grace)
            _end_group(job, grace)
        # Background processes the job left behind may hold its pipe open for
        # hours: take what is there, don't wait for them.
        job.watch(lambda: job.drained, DRAIN_SECONDS)
    except BaseException:
        job.signal_group(signal.SIGKILL)  # never leave a job unsupervised
        raise
    finally:
        job.close()
    assert job.returncode is not None
    return ended(running, job.returncode, cause, request.timeout)


def argv_of(request: LaunchRequest) -> tuple[str, ...]:
    if request.argv is not None:
        return request.argv
    assert request.command is not None
    return ("/bin/sh", "-c", request.command)


def not_executed(request: LaunchRequest, workdir: str, exc: OSError) -> RunStatus:
    now = datetime.now(UTC)
    if exc.filename == workdir:
        return RunStatus(request.launch_id, RunState.FAILED, ended_at=now,
                         reason=f"cannot enter workdir {workdir!r}: {exc.strerror}")
    program = argv_of(request)[0]
    return RunStatus(request.launch_id, RunState.FAILED, ended_at=now,
                     exit_code=127 if isinstance(exc, FileNotFoundError) else 126,
                     reason=f"cannot execute {program!r}: {exc.strerror}")


def _until_end(job: Job, stop: StopSignal, time_limit: float | None) -> RunState | None:
    """None when the job exits by itself; otherwise why it must be ended."""
    job.watch(lambda: job.exited or stop.requested, time_limit)
    if job.exited:
        return None
    return RunState.STOPPED if stop.requested else RunState.TIMED_OUT


def _stop_grace(run: RunDir, spec: RunSpec) -> float:
    request = run.read_json(STOP)
    return spec.grace if request is None else float(request["grace"])


def _end_group(job: Job, grace: float) -> None:
    """SIGTERM to the job's whole group; SIGKILL to whatever is left after ``grace``."""
    deadline = time.monotonic() + grace
    job.signal_group(signal.SIGTERM)
    job.watch(lambda: job.exited, grace)
    # The job is gone; its children get what is left of the grace period. No
    # signal says "the group is empty" (they are not our children): poll.
    while job.group_alive() and (left := deadline - time.monotonic()) > 0:
        job.watch(lambda: False, min(left, GROUP_POLL_SECONDS))
    job.signal_group(signal.SIGKILL)
    job.watch(lambda: job.exited, None)


def ended(running: RunStatus, returncode: int, cause: RunState | None,
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
