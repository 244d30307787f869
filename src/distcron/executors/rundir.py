"""A launch's run directory: what the local executor and its supervisors share.

``<run_dir>/<dir_name(launch_id)>/`` holds:

- ``lock``: flock'ed exclusively by the run's owner for as long as it lives;
- ``request.json``: the :class:`RunSpec` (request, base environment, grace);
- ``supervisor.json``: ``{"pid": …}``, written and fsync'ed by the supervisor
  before it starts the job;
- ``job.json``: the ``RUNNING`` status (``pid``, which is also the job's
  process group, and ``started_at``) once the job is started;
- ``stop.json``: ``{"grace": …}``, written by ``stop`` before it signals;
- ``output`` and ``output.1``: the job's output, once it has printed something
  (:mod:`distcron.executors.output`);
- ``status.json``: the final status;
- ``supervisor.log``: the supervisor's own log.

Who owns a launch: the starter builds the directory under a temporary name
with ``lock`` held, then renames it into place; rename fails if the name
exists, so exactly one starter, in any process, owns a launch. It hands the
locked descriptor to the supervisor (a copy, sent through the fork server, see
:mod:`distcron.executors.forkserver`), which keeps it until it exits; the
starter keeps its own copy until the supervisor has started the job. An flock
belongs to the open file, not to a descriptor or a process, so every copy holds
the same lock. "The lock is held" therefore means "someone alive is responsible
for this run", without a gap between starter and supervisor and without pids
(which get reused): the kernel drops the lock when the last holder dies,
however it dies.

Reading a run (readers take the lock *shared*, so the files cannot change
owner under them):

- ``status.json``: final, whatever else.
- lock held: ``RUNNING`` (``reason="starting"`` until ``job.json`` exists).
- lock free, ``supervisor.json`` present: ``LOST`` — the supervisor died
  before the end (killed, machine restarted); the job may even live on.
- lock free, no ``supervisor.json``: the starter died before its supervisor
  got going, so the job was never started. That reads ``NOT_FOUND``, and the
  next :func:`claim` takes the directory over.

On failure: file-system errors (``OSError``) propagate to the caller; a run
directory removed meanwhile reads ``NOT_FOUND``. All writes of JSON files are
atomic (temporary file, fsync, rename), so a reader never sees half a file.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shutil
import signal
import string
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from distcron.executors.base import LaunchRequest, RunState, RunStatus

LOCK = "lock"
REQUEST = "request.json"
SUPERVISOR = "supervisor.json"
JOB = "job.json"
STOP = "stop.json"
STATUS = "status.json"
LOG = "supervisor.log"

# Our own entries in run_dir start with "."; dir_name never makes such a name.
_TMP = ".tmp-"
_TRASH = ".trash-"
_SAFE = frozenset(string.ascii_letters + string.digits + "-_.@:+")
_MAX_NAME = 200  # bytes; file names may have 255


def _token(size: int) -> str:
    # Not the secrets module: it imports random, whose reseeding at every fork
    # would cost each supervisor (a fork of the fork server) for nothing.
    return os.urandom(size).hex()


def dir_name(launch_id: str) -> str:
    """A file name for ``launch_id``: readable, one-to-one, and safe whatever the id
    holds. Unsafe characters are %-encoded; a long name keeps its first part and
    gains ``~`` and a hash of the whole id (``~`` is otherwise always encoded)."""
    if not launch_id:
        raise ValueError("empty launch id")
    name = "".join(
        c if c in _SAFE else "".join(f"%{b:02X}" for b in c.encode()) for c in launch_id)
    if name.startswith("."):
        name = "%2E" + name[1:]
    if len(name) > _MAX_NAME:
        digest = hashlib.sha256(launch_id.encode()).hexdigest()[:32]
        name = f"{name[:_MAX_NAME - 33]}~{digest}"
    return name


@dataclass(frozen=True)
class RunSpec:
    """Everything the supervisor needs: the request, the environment every job
    starts from, and the grace between SIGTERM and SIGKILL at a timeout."""

    request: LaunchRequest
    base_env: Mapping[str, str]
    grace: float

    def job_env(self) -> dict[str, str]:
        # The launch's own variables come last: a job's env cannot fake them.
        return {**self.base_env, **self.request.env, **self.request.launch_env()}

    def workdir(self) -> str:
        return self.request.workdir or self.base_env.get("HOME") or "/"

    def to_dict(self) -> dict[str, Any]:
        return {"request": self.request.to_dict(), "base_env": dict(self.base_env),
                "grace": self.grace}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunSpec:
        return cls(LaunchRequest.from_dict(data["request"]), dict(data["base_env"]),
                   float(data["grace"]))


class RunDir:
    """One run directory and its files."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read_json(self, name: str) -> dict[str, Any] | None:
        """The file's content, or None when it does not exist."""
        try:
            with open(self.path / name, encoding="utf-8") as file:
                data: dict[str, Any] = json.load(file)
                return data
        except FileNotFoundError:
            return None

    def write_json(self, name: str, data: Mapping[str, Any]) -> None:
        """Write atomically and durably: readers see the old file or the new one,
        and after a crash of the machine, the new one if this returned."""
        tmp = self.path / f".{name}.{_token(4)}"
        # dumps, not dump: only dumps uses the C encoder.
        text = json.dumps(data).encode()
        try:
            with open(tmp, "wb") as file:
                file.write(text)
                file.flush()
                os.fsync(file.fileno())
            os.replace(tmp, self.path / name)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        fsync_dir(self.path)

    def spec(self) -> RunSpec | None:
        data = self.read_json(REQUEST)
        return None if data is None else RunSpec.from_dict(data)

    def open_lock(self) -> int:
        return os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)

    @contextlib.contextmanager
    def unowned(self) -> Iterator[bool]:
        """True, with the lock held shared for the block, when no owner is alive;
        False when one is. Raises FileNotFoundError if the directory is gone."""
        fd = os.open(self.path / LOCK, os.O_RDONLY | os.O_CLOEXEC)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
            else:
                yield True
        finally:
            os.close(fd)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def run_of(root: Path, launch_id: str) -> RunDir:
    return RunDir(root / dir_name(launch_id))


def claim(root: Path, spec: RunSpec) -> int | None:
    """Make the caller the owner of the launch.

    Returns a descriptor holding the run's lock exclusively: the caller owns the
    run and must pass the descriptor (or a copy of it) on to its supervisor;
    closing every copy before the supervisor has written ``supervisor.json``
    leaves the run never started, to be claimed again. Returns None when the
    launch is, or was, someone else's.
    """
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    run = run_of(root, spec.request.launch_id)
    fd = _publish(root, run, spec)
    return fd if fd is not None else _take_over(run, spec)


def _publish(root: Path, run: RunDir, spec: RunSpec) -> int | None:
    tmp = RunDir(root / f"{_TMP}{_token(8)}")
    os.mkdir(tmp.path, 0o700)
    fd = tmp.open_lock()
    fcntl.flock(fd, fcntl.LOCK_EX)  # a new file: nobody else can hold it
    try:
        tmp.write_json(REQUEST, spec.to_dict())
        # The run always holds files, and rename(2) does not replace a
        # non-empty directory: exactly one starter succeeds.
        os.rename(tmp.path, run.path)
    except BaseException as exc:
        os.close(fd)
        shutil.rmtree(tmp.path, ignore_errors=True)
        if isinstance(exc, OSError) and exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
            return None
        raise
    fsync_dir(root)
    return fd


def _take_over(run: RunDir, spec: RunSpec) -> int | None:
    """Own a run whose starter died before its supervisor wrote ``supervisor.json``."""
    try:
        fd = run.open_lock()
    except FileNotFoundError:
        return None
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                with run.unowned() as free:
                    if not free:
                        os.close(fd)
                        return None
                # Only a reader's shared lock was in the way; readers hold it
                # for microseconds.
                time.sleep(0.001)
        if run.read_json(SUPERVISOR) is not None:
            os.close(fd)
            return None
        # A stop asked of the dead starter's attempt is not one of this start.
        (run.path / STOP).unlink(missing_ok=True)
        run.write_json(REQUEST, spec.to_dict())  # the new starter's request (fence)
        return fd
    except BaseException:
        with contextlib.suppress(OSError):
            os.close(fd)
        raise


def read_status(root: Path, launch_id: str) -> RunStatus:
    run = run_of(root, launch_id)
    try:
        with run.unowned() as free:
            return _status(run, launch_id, owner_alive=not free)
    except FileNotFoundError:
        return RunStatus(launch_id, RunState.NOT_FOUND)


def _status(run: RunDir, launch_id: str, owner_alive: bool) -> RunStatus:
    final = run.read_json(STATUS)
    if final is not None:
        return RunStatus.from_dict(final)
    job = run.read_json(JOB)
    if owner_alive:
        if job is None:
            return RunStatus(launch_id, RunState.RUNNING, reason="starting")
        return RunStatus.from_dict(job)
    if run.read_json(SUPERVISOR) is None:
        return RunStatus(launch_id, RunState.NOT_FOUND,
                         reason="never started: its starter died before its supervisor ran")
    started = RunStatus(launch_id, RunState.LOST) if job is None else RunStatus.from_dict(job)
    return RunStatus(
        launch_id, RunState.LOST, pid=started.pid, started_at=started.started_at,
        reason="its supervisor vanished (killed, or the machine restarted) before it ended")


def request_stop(root: Path, launch_id: str, grace: float) -> None:
    """Ask the run's supervisor to stop it. A supervisor that is still starting
    reads ``stop.json`` before it starts the job, so writing it comes first."""
    run = run_of(root, launch_id)
    run.write_json(STOP, {"grace": grace})
    supervisor = run.read_json(SUPERVISOR)
    if supervisor is None:
        return
    with run.unowned() as free:
        # Held lock + supervisor.json: that pid is alive and is our supervisor
        # (only a pid wrap-around between this check and kill could fool it).
        if not free:
            with contextlib.suppress(ProcessLookupError):
                os.kill(supervisor["pid"], signal.SIGTERM)


def prune(root: Path, before: datetime) -> list[str]:
    """Remove the directories of runs that are not live and whose files last
    changed before ``before``; returns their launch ids."""
    try:
        entries = [entry for entry in os.scandir(root) if entry.is_dir()]
    except FileNotFoundError:
        return []
    removed = []
    for entry in entries:
        if entry.name.startswith(_TRASH):  # a prune that died halfway
            shutil.rmtree(entry.path, ignore_errors=True)
            continue
        run = RunDir(Path(entry.path))
        # Read first: once removed, it is gone. (A take-over rewrites the
        # request, never its launch id.)
        spec = run.read_json(REQUEST)
        if _remove_if_old(root, run, before.timestamp()) and not entry.name.startswith(_TMP):
            removed.append(str(spec["request"]["launch_id"]) if spec else entry.name)
    return removed


def _remove_if_old(root: Path, run: RunDir, cutoff: float) -> bool:
    try:
        fd = run.open_lock()  # creates it in a temporary directory cut short
    except FileNotFoundError:
        return False
    try:
        try:
            # Exclusive: no owner alive, no reader, no take-over while we look.
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        if _last_change(run.path) >= cutoff:
            return False
        trash = root / f"{_TRASH}{_token(8)}"
        os.rename(run.path, trash)  # gone at once for readers, then deleted
    finally:
        os.close(fd)
    shutil.rmtree(trash, ignore_errors=True)
    return True


def _last_change(path: Path) -> float:
    return max([path.stat().st_mtime, *(entry.stat().st_mtime for entry in os.scandir(path))])
