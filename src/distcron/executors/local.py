"""The local executor: runs launches on this machine, each under its own supervisor.

Every launch gets a run directory under ``run_dir`` (see
:mod:`distcron.executors.rundir`) and a supervisor process
(:mod:`distcron.executors.supervisor`) that outlives the replica. Everything the
executor knows is in those directories, so any ``LocalExecutor`` on the same
``run_dir`` — this one, one in a restarted replica, one in another replica on
the same machine — sees the same runs and starts each launch at most once.

The job's environment is ``base_env`` (by default :func:`default_base_env`),
then the job's own ``env``, then ``DISTCRON_JOB``, ``DISTCRON_LAUNCH_ID``,
``DISTCRON_SLOT`` (empty for a run started by hand) and ``DISTCRON_FENCE``.
Nothing is inherited from the replica's environment, which may hold
``DISTCRON_TOKEN``; the supervisor does not get it either. The job runs in its
``workdir``, by default the ``HOME`` of ``base_env``.

On failure:

- The replica dies, even by SIGKILL: supervisors are not its children, not in
  its session and not tied to it by a pipe, so runs go on and their timeouts
  hold. A new executor on the same ``run_dir`` adopts them: ``query``,
  ``wait``, ``stop`` and ``output`` work as for its own runs.
- A supervisor dies without recording the end (killed, machine restart): its
  run reads ``LOST``, never ``RUNNING`` forever. The job may still be running,
  orphaned; the executor does not kill it, as its process group id may have
  been reused.
- ``start`` cannot create the run directory or the supervisor: ExecutorError,
  and nothing was started; starting again is safe (a run directory left
  without a supervisor reads ``NOT_FOUND`` and the next ``start`` takes it over).
- Other file-system errors raise ExecutorError naming the launch.

Runs outlive the replica only if whatever manages the replica lets them: under
systemd, stopping a unit kills its whole cgroup unless it sets
``KillMode=process``. Linux only (``/proc``, ``flock``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import pwd
import socket
import subprocess
import sys
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import ParamSpec, TypeVar

import distcron
from distcron.errors import ExecutorError
from distcron.executors import rundir
from distcron.executors.base import Executor, LaunchRequest, RunState, RunStatus
from distcron.executors.output import read_output

log = logging.getLogger("distcron.executors")

_P = ParamSpec("_P")
_T = TypeVar("_T")

# cron's choice for PATH, with sbin: the same on every replica, whatever
# environment the replica itself was started with.
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def default_base_env() -> dict[str, str]:
    """PATH, HOME, USER, LOGNAME, SHELL and LANG, for the user the replica runs as."""
    try:
        entry = pwd.getpwuid(os.getuid())
        home, user = entry.pw_dir, entry.pw_name
    except KeyError:  # a uid without a passwd entry, common in containers
        home, user = "/", str(os.getuid())
    return {"PATH": DEFAULT_PATH, "HOME": home, "USER": user, "LOGNAME": user,
            "SHELL": "/bin/sh", "LANG": "C.UTF-8"}


def _supervisor_env() -> dict[str, str]:
    # Only what Python needs to import distcron, wherever it was loaded from.
    return {"PYTHONPATH": str(Path(distcron.__file__).resolve().parents[1])}


def _claim_and_spawn(root: Path, spec: rundir.RunSpec) -> subprocess.Popen[bytes] | None:
    """Claim the launch and start its supervisor, handing it the lock; None when
    the launch is someone else's. The supervisor's stdout is a pipe to us: it
    writes "ready" there once the job is started, then lets go of it."""
    lock_fd = rundir.claim(root, spec)
    if lock_fd is None:
        return None
    run = rundir.run_of(root, spec.request.launch_id)
    try:
        with open(run.path / rundir.LOG, "ab") as log_file:
            return subprocess.Popen(
                [sys.executable, "-m", "distcron.executors.supervisor", str(run.path)],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log_file,
                cwd=run.path, env=_supervisor_env(), pass_fds=(lock_fd,),
                start_new_session=True)
    finally:
        # The supervisor holds the lock now (or, if it failed to start, nobody
        # does, and the run reads as never started).
        os.close(lock_fd)


async def _read_to_eof(fd: int) -> None:
    loop = asyncio.get_running_loop()
    eof = loop.create_future()

    def readable() -> None:
        try:
            data = os.read(fd, 4096)
        except BlockingIOError:
            return
        if not data and not eof.done():
            eof.set_result(None)

    os.set_blocking(fd, False)
    loop.add_reader(fd, readable)
    try:
        await eof
    finally:
        loop.remove_reader(fd)


class LocalExecutor(Executor):
    """Runs launches as processes on this machine; see the module docstring.

    ``grace`` is the default time between SIGTERM and SIGKILL, at a timeout and
    on ``stop``. ``poll_interval`` is how often ``wait`` looks at a run.
    ``start_timeout`` bounds how long ``start`` waits for a supervisor to start
    the job; after it, ``start`` returns the run as ``RUNNING`` (starting).
    """

    name = "local"

    def __init__(self, run_dir: Path, grace: float = 10.0, *,
                 base_env: Mapping[str, str] | None = None, poll_interval: float = 0.2,
                 start_timeout: float = 30.0) -> None:
        self.run_dir = Path(run_dir).absolute()
        self.location = f"{socket.gethostname()}:{self.run_dir}"
        self._grace = grace
        self._base_env = dict(default_base_env() if base_env is None else base_env)
        self._poll_interval = poll_interval
        self._start_timeout = start_timeout

    async def start(self, request: LaunchRequest) -> RunStatus:
        launch_id = request.launch_id
        spec = rundir.RunSpec(request, self._base_env, self._grace)
        # One thread does both, so that the claimed lock reaches a supervisor
        # (or is released) even if this call is cancelled meanwhile.
        supervisor = await self._io(f"start launch {launch_id!r}", _claim_and_spawn,
                                    self.run_dir, spec)
        if supervisor is None:
            status = await self.query(launch_id)
            if status.state is RunState.NOT_FOUND:
                raise ExecutorError(
                    f"launch {launch_id!r}: another start of it failed, or its run was "
                    "pruned, meanwhile; nothing was started, and starting again is safe")
            log.info("event=start_skipped launch_id=%s state=%s", launch_id,
                     status.state.value)
            return status
        await self._until_ready(launch_id, supervisor)
        status = await self.query(launch_id)
        if status.state is RunState.NOT_FOUND:
            raise ExecutorError(
                f"launch {launch_id!r}: its supervisor exited before starting the job; "
                f"see {rundir.run_of(self.run_dir, launch_id).path / rundir.LOG}")
        log.info("event=run_started launch_id=%s state=%s pid=%s", launch_id,
                 status.state.value, status.pid)
        return status

    async def _until_ready(self, launch_id: str, supervisor: subprocess.Popen[bytes]) -> None:
        """Wait until the supervisor has started the job (or found it cannot)."""
        assert supervisor.stdout is not None
        try:
            async with asyncio.timeout(self._start_timeout):
                await _read_to_eof(supervisor.stdout.fileno())
        except TimeoutError:
            log.warning("event=start_slow launch_id=%s timeout=%s", launch_id,
                        self._start_timeout)
        finally:
            supervisor.stdout.close()
        # Reap the parent that forked the supervisor: it exits right after.
        await asyncio.to_thread(supervisor.wait)

    async def query(self, launch_id: str) -> RunStatus:
        return await self._io(f"read the status of launch {launch_id!r}",
                              rundir.read_status, self.run_dir, launch_id)

    async def wait(self, launch_id: str) -> RunStatus:
        # Supervisors are nobody's children, so there is no exit to wait on:
        # poll the run directory (a shared flock and a few small files).
        while True:
            status = await self.query(launch_id)
            if status.state is not RunState.RUNNING:
                return status
            await asyncio.sleep(self._poll_interval)

    async def stop(self, launch_id: str, grace: float | None = None) -> RunStatus:
        status = await self.query(launch_id)
        if status.state is not RunState.RUNNING:
            return status
        grace = self._grace if grace is None else grace
        log.info("event=stop_requested launch_id=%s grace=%s", launch_id, grace)
        await self._io(f"stop launch {launch_id!r}", rundir.request_stop, self.run_dir,
                       launch_id, grace)
        return await self.wait(launch_id)

    async def output(self, launch_id: str) -> bytes:
        return await self._io(f"read the output of launch {launch_id!r}",
                              self._read_output, launch_id)

    def _read_output(self, launch_id: str) -> bytes:
        run = rundir.run_of(self.run_dir, launch_id)
        spec = run.spec()
        return b"" if spec is None else read_output(run, spec.request.output_limit)

    async def prune(self, before: datetime) -> list[str]:
        """Forget runs that are not live and whose last change (usually their
        end) is older than ``before``; returns their launch ids. A pruned launch
        is unknown to the executor: prune only what the store has recorded as
        ended, or a later ``start`` with its id would run it again."""
        removed = await self._io(f"prune {self.run_dir}", rundir.prune, self.run_dir,
                                 before)
        for launch_id in removed:
            log.info("event=run_pruned launch_id=%s", launch_id)
        return removed

    async def close(self) -> None:
        """Nothing to release: the executor holds no process, file or task between
        calls, and the runs go on."""

    async def _io(self, what: str, func: Callable[_P, _T], *args: _P.args,
                  **kwargs: _P.kwargs) -> _T:
        """Run blocking file work off the event loop; OSError becomes ExecutorError."""
        try:
            return await asyncio.to_thread(func, *args, **kwargs)
        except OSError as exc:
            raise ExecutorError(f"cannot {what}: {exc}") from exc
