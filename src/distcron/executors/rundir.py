"""A launch's run directory: what the local executor and its supervisors share.

``<run_dir>/<dir_name(launch_id)>/`` holds:

- ``lock``: flock'ed exclusively by the run's owner for as long as it lives;
- ``request.json``: the :class:`RunSpec` (request, base environment, grace);
- ``staged.json``: ``{"batch": …}``: the directory of the batch that holds a
  launch staged ahead of its slot (see :mod:`distcron.executors.batch`), whose
  ``supervisor.json`` names the batch supervisor; its ``released.json``, made durable
  before it starts any job, lists the runs it released, and its
  ``running.json`` holds what ``job.json`` would for each;
- ``release``: written by whoever releases a staged launch it did not stage;
- ``supervisor.json``: ``{"pid": …}``, written and fsync'ed by the supervisor of
  one launch before it starts the job;
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
- lock held, ``staged.json`` present and not released: ``STAGED``; nothing of
  the job has run.
- lock held: ``RUNNING`` (``reason="starting"`` until ``job.json`` exists).
- lock free, started (``supervisor.json`` present, or released by its batch):
  ``LOST`` — the supervisor died before the end (killed, machine restarted);
  the job may even live on.
- lock free, not started: the starter (or batch) died before its supervisor
  got going, so the job was never started. That reads ``NOT_FOUND``, and the
  next :func:`claim` takes the directory over.

On failure: file-system errors (``OSError``) propagate to the caller; a run
directory removed meanwhile reads ``NOT_FOUND``. All writes of JSON files are
atomic (temporary file, fsync, rename), so a reader never sees half a file.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import hashlib
import json
import os
import shutil
import signal
import string
import time
from collections.abc import Iterator, Mapping, Sequence
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
STAGED = "staged.json"
RELEASE = "release"
BATCH_LIST = "batch.json"  # in a batch's directory: its runs and release deadline
BATCH_RELEASED = "released.json"  # in a batch's directory
BATCH_RUNNING = "running.json"  # in a batch's directory: its started runs' job.json

# Our own entries in run_dir start with "."; dir_name never makes such a name.
_TMP = ".tmp-"
_TRASH = ".trash-"
BATCH_PREFIX = ".batch-"  # a batch supervisor's own directory (its list and log)
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

    def prepare(self, name: str) -> None:
        """Create now the file a later ``write_json(name, prepared=True)`` fills
        and renames into place: creating a file (an inode) is the dearest part
        of a small write, and a batch pays it before the slot, not at it."""
        os.close(os.open(self.prepared_path(name), os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC,
                         0o600))

    def prepared_path(self, name: str) -> Path:
        return self.path / f".{name}.prepared"

    def write_json(self, name: str, data: Mapping[str, Any], *, durable: bool = True,
                   prepared: bool = False) -> None:
        """Write atomically: readers see the old file or the new one. ``durable``:
        after a crash of the machine, the new one if this returned; a batch
        writes without and makes a whole file system durable once (:func:`sync`).
        ``prepared``: through the file :meth:`prepare` made (made now if not).
        Only one writer of ``name`` at a time may use it."""
        tmp = self.prepared_path(name) if prepared else self.path / f".{name}.{_token(4)}"
        # dumps, not dump: only dumps uses the C encoder.
        text = json.dumps(data).encode()
        try:
            with open(tmp, "wb") as file:
                file.write(text)
                file.flush()
                if durable:
                    os.fsync(file.fileno())
            os.replace(tmp, self.path / name)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        if durable:
            fsync_dir(self.path)

    def started(self) -> bool:
        """Whether its job may have been started: its supervisor said it would
        start it, or its batch released it."""
        if self.read_json(SUPERVISOR) is not None:
            return True
        batch = self._batch()
        released = None if batch is None else batch.read_json(BATCH_RELEASED)
        return released is not None and self.path.name in released["runs"]

    def job(self) -> dict[str, Any] | None:
        """The ``RUNNING`` status written once its job started: in ``job.json``,
        or in its batch's ``running.json`` (one file for the batch's starts)."""
        job = self.read_json(JOB)
        if job is None and (batch := self._batch()) is not None:
            entry: dict[str, Any] | None = (batch.read_json(BATCH_RUNNING) or {}).get(
                self.path.name)
            return entry
        return job

    def supervisor_pid(self) -> int | None:
        """Its supervisor's pid, or its batch supervisor's, once written."""
        supervisor = self.read_json(SUPERVISOR)
        if supervisor is None and (batch := self._batch()) is not None:
            supervisor = batch.read_json(SUPERVISOR)
        return None if supervisor is None else int(supervisor["pid"])

    def _batch(self) -> RunDir | None:
        staged = self.read_json(STAGED)
        return None if staged is None else RunDir(self.path.parent / staged["batch"])

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


def sync(path: Path) -> None:
    """Make everything written on ``path``'s file system durable, in one call: the
    cost of one fsync for a whole batch of small files."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if _libc_syncfs(fd) != 0:
            raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()), str(path))
    finally:
        os.close(fd)


def _libc_syncfs(fd: int) -> int:
    return int(_LIBC.syncfs(fd))


_LIBC = ctypes.CDLL(None, use_errno=True)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def run_of(root: Path, launch_id: str) -> RunDir:
    return RunDir(root / dir_name(launch_id))


def claim(root: Path, spec: RunSpec, *, durable: bool = True,
          batch: str | None = None) -> int | None:
    """Make the caller the owner of the launch.

    Returns a descriptor holding the run's lock exclusively: the caller owns the
    run and must pass the descriptor (or a copy of it) on to its supervisor;
    closing every copy before the supervisor has written ``supervisor.json``
    leaves the run never started, to be claimed again. Returns None when the
    launch is, or was, someone else's.
    """
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    run = run_of(root, spec.request.launch_id)
    fd = _publish(root, run, spec, durable, batch)
    return fd if fd is not None else _take_over(run, spec, batch)


def _publish(root: Path, run: RunDir, spec: RunSpec, durable: bool,
             batch: str | None) -> int | None:
    tmp = RunDir(root / f"{_TMP}{_token(8)}")
    os.mkdir(tmp.path, 0o700)
    fd = tmp.open_lock()
    fcntl.flock(fd, fcntl.LOCK_EX)  # a new file: nobody else can hold it
    try:
        if durable:
            tmp.write_json(REQUEST, spec.to_dict())
        else:  # nobody else sees the directory before the rename
            (tmp.path / REQUEST).write_bytes(json.dumps(spec.to_dict()).encode())
        if batch is not None:
            (tmp.path / STAGED).write_bytes(json.dumps({"batch": batch}).encode())
        # The run always holds files, and rename(2) does not replace a
        # non-empty directory: exactly one starter succeeds.
        os.rename(tmp.path, run.path)
    except BaseException as exc:
        os.close(fd)
        shutil.rmtree(tmp.path, ignore_errors=True)
        if isinstance(exc, OSError) and exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
            return None
        raise
    if durable:
        fsync_dir(root)
    return fd


def _take_over(run: RunDir, spec: RunSpec, batch: str | None) -> int | None:
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
        if run.started():
            os.close(fd)
            return None
        # A stop asked of the dead starter's attempt is not one of this start,
        # nor is a staging let go of.
        for path in (run.path / STOP, run.path / STAGED, run.path / RELEASE,
                     run.prepared_path(STATUS)):
            path.unlink(missing_ok=True)
        run.write_json(REQUEST, spec.to_dict())  # the new starter's request (fence)
        if batch is not None:
            run.write_json(STAGED, {"batch": batch}, durable=False)
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
    job = run.job()
    if owner_alive:
        if job is None and (run.path / STAGED).exists() and not run.started():
            return RunStatus(launch_id, RunState.STAGED)
        if job is None:
            return RunStatus(launch_id, RunState.RUNNING, reason="starting")
        return RunStatus.from_dict(job)
    if not run.started():
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
    pid = run.supervisor_pid()
    if pid is None:
        return
    with run.unowned() as free:
        # Held lock + supervisor.json: that pid is alive and is our supervisor
        # (only a pid wrap-around between this check and kill could fool it).
        if not free:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)


def request_release(root: Path, launch_ids: Sequence[str]) -> list[bool]:
    """Tell the batch supervisors of staged launches to start them; per launch,
    False when it is not staged (any more): it is then for ``start`` to deal with."""
    return _tell_staged(root, launch_ids, RELEASE, b"")


def request_unstage(root: Path, launch_ids: Sequence[str]) -> None:
    """Tell the batch supervisors of staged launches to let them go unstarted."""
    _tell_staged(root, launch_ids, STOP, json.dumps({"grace": 0.0}).encode())


def _tell_staged(root: Path, launch_ids: Sequence[str], marker: str,
                 content: bytes) -> list[bool]:
    # Every marker first, then one signal per supervisor: it acts on what it
    # finds when signalled, so a signal per launch would split the batch.
    told, owners = [], set()
    for launch_id in launch_ids:
        run = run_of(root, launch_id)
        try:
            with run.unowned() as free:
                pid = run.supervisor_pid()
                if free or pid is None or not (run.path / STAGED).exists() or run.started():
                    told.append(False)
                    continue
                (run.path / marker).write_bytes(content)
                owners.add(pid)
                told.append(True)
        except FileNotFoundError:
            told.append(False)
    for pid in owners:
        # It held the lock a moment ago: that pid is alive and holds the launch
        # (only a pid wrap-around meanwhile could fool this). A supervisor that
        # died meanwhile let its launches go: they read NOT_FOUND.
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGUSR1)
    return told


def release_batches(batches: Sequence[tuple[Path, int, Sequence[str]]]) -> list[bool]:
    """Tell each batch supervisor (its directory, its pid) to start these of its
    runs (by directory name): one file and one signal per batch. Per batch,
    False when its supervisor is gone (its launches read NOT_FOUND)."""
    # Every file first, then the signals: batches told early start spawning at
    # once and would starve the telling of the others.
    for batch_dir, _, names in batches:
        RunDir(batch_dir).write_json(f"{RELEASE}-{_token(8)}.json", {"runs": list(names)},
                                     durable=False)
    told = []
    for _, pid, _ in batches:
        try:
            os.kill(pid, signal.SIGUSR1)
        except ProcessLookupError:
            told.append(False)
        else:
            told.append(True)
    return told


def prune(root: Path, before: datetime) -> list[str]:
    """Remove the directories of runs that are not live and whose files last
    changed before ``before``; returns their launch ids."""
    try:
        entries = [entry for entry in os.scandir(root) if entry.is_dir()]
    except FileNotFoundError:
        return []
    removed = []
    batches = []
    for entry in entries:
        if entry.name.startswith(_TRASH):  # a prune that died halfway
            shutil.rmtree(entry.path, ignore_errors=True)
            continue
        run = RunDir(Path(entry.path))
        if entry.name.startswith(BATCH_PREFIX):
            batches.append(run)
            continue
        # Read first: once removed, it is gone. (A take-over rewrites the
        # request, never its launch id.)
        spec = run.read_json(REQUEST)
        if _remove_if_old(root, run, before.timestamp()) and not entry.name.startswith(_TMP):
            removed.append(str(spec["request"]["launch_id"]) if spec else entry.name)
    for batch in batches:
        # Its list says which of its runs were started: it goes after them.
        # (Its supervisor holds its lock while alive.)
        listing = batch.read_json(BATCH_LIST) or {"runs": []}
        if not any((root / name).exists() for name in listing["runs"]):
            _remove_if_old(root, batch, before.timestamp())
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
