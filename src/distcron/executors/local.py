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
        # Once the launch is claimed, its lock must reach a supervisor (or be
        # released): a cancelled caller must not leave it held by this process.
        return await asyncio.shield(self._start(request))

    async def _start(self, request: LaunchRequest) -> RunStatus:
        launch_id = request.launch_id
        spec = rundir.RunSpec(request, self._base_env, self._grace)
        lock_fd = await self._io(launch_id, "claim", rundir.claim, self.run_dir, spec)
        if lock_fd is None:
            status = await self.query(launch_id)
            if status.state is RunState.NOT_FOUND:  # its directory went away meanwhile
                raise ExecutorError(f"launch {launch_id!r}: its run directory changed "
                                    "while starting; nothing was started")
            log.info("event=start_skipped launch_id=%s state=%s", launch_id,
                     status.state.value)
            return status
        await self._spawn_supervisor(launch_id, lock_fd)
        status = await self.query(launch_id)
        if status.state is RunState.NOT_FOUND:
            raise ExecutorError(
                f"launch {launch_id!r}: its supervisor exited before starting the job; "
                f"see {rundir.run_of(self.run_dir, launch_id).path / rundir.LOG}")
        log.info("event=run_started launch_id=%s state=%s pid=%s", launch_id,
                 status.state.value, status.pid)
        return status

    async def _spawn_supervisor(self, launch_id: str, lock_fd: int) -> None:
        """Start the supervisor, hand it the lock, and wait until the job is started."""
        run = rundir.run_of(self.run_dir, launch_id)
        try:
            log_fd = await asyncio.to_thread(
                os.open, run.path / rundir.LOG,
                os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
            try:
                proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "distcron.executors.supervisor", str(run.path),
                    stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                    stderr=log_fd, cwd=run.path, env=_supervisor_env(),
                    pass_fds=(lock_fd,), start_new_session=True)
            finally:
                os.close(log_fd)
        except OSError as exc:
            raise ExecutorError(f"launch {launch_id!r}: cannot start its supervisor: "
                                f"{exc}") from exc
        finally:
            # The supervisor holds the lock now (or, if it failed, nobody does,
            # and the run reads as never started).
            os.close(lock_fd)
        assert proc.stdout is not None
        try:
            async with asyncio.timeout(self._start_timeout):
                await proc.stdout.read()  # "ready", then EOF when it lets go
                await proc.wait()  # the parent that forked the supervisor
        except TimeoutError:
            log.warning("event=start_slow launch_id=%s timeout=%s", launch_id,
                        self._start_timeout)

    async def query(self, launch_id: str) -> RunStatus:
        return await self._io(launch_id, "read the status", rundir.read_status,
                              self.run_dir, launch_id)

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
        await self._io(launch_id, "stop", rundir.request_stop, self.run_dir, launch_id, grace)
        return await self.wait(launch_id)

    async def output(self, launch_id: str) -> bytes:
        return await self._io(launch_id, "read the output", self._read_output, launch_id)

    def _read_output(self, launch_id: str) -> bytes:
        run = rundir.run_of(self.run_dir, launch_id)
        spec = run.spec()
        return b"" if spec is None else read_output(run, spec.request.output_limit)

    async def prune(self, before: datetime) -> list[str]:
        """Forget runs that are not live and whose last change (usually their
        end) is older than ``before``; returns their launch ids. A pruned launch
        is unknown to the executor: prune only what the store has recorded as
        ended, or a later ``start`` with its id would run it again."""
        removed = await self._io("*", "prune", rundir.prune, self.run_dir, before)
        for launch_id in removed:
            log.info("event=run_pruned launch_id=%s", launch_id)
        return removed

    async def close(self) -> None:
        """Nothing to release: the executor holds no process, file or task between
        calls, and the runs go on."""

    async def _io(self, launch_id: str, what: str, func: Callable[_P, _T],
                  *args: _P.args, **kwargs: _P.kwargs) -> _T:
        """Run blocking file work off the event loop; OSError becomes ExecutorError."""
        try:
            return await asyncio.to_thread(func, *args, **kwargs)
        except OSError as exc:
            raise ExecutorError(f"launch {launch_id!r}: cannot {what}: {exc}") from exc
