"""The batch supervisor: one fork of the fork server for up to :data:`BATCH_SIZE`
launches of one slot, staged ahead of the slot and released at it.

Why not a supervisor per launch here: each costs some 10 ms of CPU (a fork of an
interpreter and the pages it then copies, four fsyncs, ``subprocess``), so two
thousand launches due at once keep two cores busy for ten seconds. A batch pays
the fork once, makes what it starts durable in one file, and starts each job
with ``posix_spawn`` (about half a millisecond). Its launches are staged: their
run directories are claimed and this process holds their locks before the slot,
so at the slot only the spawns remain.

Even the spawns can be paid ahead for a job given as a ``command`` (a shell
line): with ``prestart``, its shell is started when the batch is staged, held at
a gate (``read`` on descriptor 3, a pipe whose other end only this process
holds) before it reads a word of the command. The release writes one byte to the
gate and the shell runs the command at once; two thousand shells spawned at the
slot take about a second of this machine's two cores, released from their gates
about a fifth of that. A shell that reads end-of-file instead (the launch let go,
this process dead, however it died) exits with :data:`GATE_CLOSED` without
running anything. A held shell costs some 160 KB (its private pages and page
tables), which is why the local executor bounds how many it holds
(:data:`~distcron.executors.local.PRESTART_LIMIT`).

Life of a batch (its list of runs and its log are in ``<run_dir>/.batch-…/``):

1. Forked with the handshake pipe and every run's lock, each run claimed with
   a ``staged.json`` naming the batch (it reads ``STAGED``: held, nothing
   started). It writes its pid in the batch's ``supervisor.json`` and
   ``staged <pid>`` on the pipe, after starting the held shells (``prestart``).
2. Waits. SIGUSR1 (from :func:`~distcron.executors.rundir.release_batches`,
   ``request_release`` or ``request_unstage``) makes it look at the markers:
   ``stop.json`` lets a staged run go; a ``release-….json`` in the batch's
   directory naming it, or ``release`` in its own, starts it. A run still staged at its
   ``release_by`` is let go too: its leader died or lost its lease. A run let go
   is only its lock closed: it reads ``NOT_FOUND`` and the next start takes it
   over. Nothing of it has run.
3. Releasing: the batch's ``released.json`` made durable with every released
   run in it, then the gates opened and the other jobs spawned, each job in a
   session of its own; ``released`` on the pipe.
   What ``job.json`` says for one launch, ``running.json`` says for the batch.
4. Supervises its jobs as the one-launch supervisor does (output into the
   ring, the timeout, ``stop`` by SIGTERM and ``stop.json``, the group killed
   after the grace) and writes each ``status.json``; exits when nothing is left.

On failure: this process killed, even by SIGKILL, closes every lock: its staged
runs read ``NOT_FOUND`` (never started) and its started ones ``LOST``, exactly
as for a supervisor of one. A job that cannot be executed ends ``FAILED`` as
there. A bug while jobs run kills their groups rather than leave them
unsupervised, as there.
"""

from __future__ import annotations

import contextlib
import fcntl
import heapq
import json
import logging
import os
import resource
import selectors
import signal
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from distcron.executors.base import RunState, RunStatus
from distcron.executors.job import CHUNK, group_alive
from distcron.executors.output import OutputRing
from distcron.executors.rundir import (
    BATCH_LIST,
    BATCH_RELEASED,
    BATCH_RUNNING,
    LOG,
    RELEASE,
    STATUS,
    STOP,
    SUPERVISOR,
    RunDir,
    RunSpec,
    sync,
)
from distcron.executors.supervisor import (
    DRAIN_SECONDS,
    GROUP_POLL_SECONDS,
    argv_of,
    ended,
    not_executed,
)
from distcron.logs import setup_logging

log = logging.getLogger("distcron.supervisor")

# At most this many launches per batch: one message to the fork server carries
# every lock (SCM_RIGHTS takes at most 253), and each running job holds a few
# descriptors of this process.
BATCH_SIZE = 100
STAGED_LINE = b"staged"  # then " <pid>\n"
RELEASED_LINE = b"released\n"
GATE_FD = 3
GATE_CLOSED = 125  # a held shell's exit code when its gate closed unopened
# Put before a job's command line, in its own line (so that nothing of the
# command is parsed before the gate opens): wait for the byte, close the gate
# so that the job never sees it, and leave the job no variable of ours.
GATE = f"read -r _ <&{GATE_FD} || exit {GATE_CLOSED}; exec {GATE_FD}<&-; unset _\n"


@dataclass
class Launch:
    run: RunDir
    spec: RunSpec
    lock_fd: int
    # Its shell, started ahead and held at the gate: the gate's write end (None
    # once opened or closed, or if never held) and the shell's pid.
    gate_fd: int | None = None
    held: int | None = None
    status: RunStatus | None = None  # RUNNING once spawned
    output_fd: int | None = None
    ring: OutputRing | None = None
    returncode: int | None = None
    deadline: float | None = None  # the timeout, on the monotonic clock
    cause: RunState | None = None  # why it is being ended, if it is
    kill_at: float | None = None
    drain_until: float | None = None

    @property
    def launch_id(self) -> str:
        return self.spec.request.launch_id


@dataclass
class _Flags:
    look: bool = False  # SIGUSR1 or SIGTERM: look at the markers
    child: bool = False

    def on_look(self, signum: int, frame: FrameType | None) -> None:
        self.look = True

    def on_child(self, signum: int, frame: FrameType | None) -> None:
        self.child = True


@dataclass
class Batch:
    own: RunDir  # the batch's directory
    release_by: float  # wall clock
    handshake_fd: int | None
    staged: dict[str, Launch] = field(default_factory=dict)  # by run directory name
    held: dict[int, Launch] = field(default_factory=dict)  # held shells not yet reaped, by pid
    released: list[str] = field(default_factory=list)
    running: dict[str, dict[str, Any]] = field(default_factory=dict)  # started, by name
    jobs: dict[int, Launch] = field(default_factory=dict)  # running, by pid
    ending: list[Launch] = field(default_factory=list)  # exited, output still draining
    timers: list[tuple[float, int]] = field(default_factory=list)  # (monotonic, pid)

    @property
    def root(self) -> Path:
        return self.own.path.parent

    def say(self, line: bytes) -> None:
        if self.handshake_fd is None:
            return
        with contextlib.suppress(BrokenPipeError):  # the stager may be gone
            os.write(self.handshake_fd, line)

    def hang_up(self) -> None:
        """Nothing is staged any more: the stager reads EOF."""
        if self.handshake_fd is not None:
            os.dup2(2, 1)  # stdout was the pipe
            self.handshake_fd = None


def run(batch_dir: Path, handshake_fd: int, lock_fds: list[int]) -> int:
    """Supervise the batch in ``batch_dir``, in this process (a fresh fork).
    ``handshake_fd`` is the write end of the stager's handshake pipe;
    ``lock_fds`` are the runs' locks, in the order of the batch's list.
    Returns the exit code."""
    os.dup2(handshake_fd, 1)  # so that closing stdout hangs up
    os.close(handshake_fd)
    _take_streams(batch_dir)
    setup_logging()
    for fd in lock_fds:  # received ones are inheritable: no job may hold a lock
        os.set_inheritable(fd, False)
    # Every job holds up to two descriptors here while it runs.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    listing = json.loads((batch_dir / BATCH_LIST).read_text())
    prestart = bool(listing.get("prestart", False))
    batch = Batch(RunDir(batch_dir), float(listing["release_by"]), 1)
    for name, lock_fd in zip(listing["runs"], lock_fds, strict=True):
        run_dir = RunDir(batch.root / name)
        spec = run_dir.spec()
        if spec is None:
            log.error("event=no_request run_dir=%s", run_dir.path)
            os.close(lock_fd)
            continue
        run_dir.prepare(STATUS)
        batch.staged[name] = Launch(run_dir, spec, lock_fd)
    # Before anyone can know whom to signal: SIGUSR1 would otherwise kill us.
    flags, wake_fd = _listen()
    try:
        if prestart:
            for job in batch.staged.values():
                _hold(batch, job)
        # Whom to signal, for a run's staged.json (written when it was claimed).
        batch.own.write_json(SUPERVISOR, {"pid": os.getpid()}, durable=False)
        log.info("event=batch_staged runs=%d held=%d pid=%d", len(batch.staged),
                 len(batch.held), os.getpid())
        batch.say(b"%s %d\n" % (STAGED_LINE, os.getpid()))
        _supervise(batch, flags, wake_fd)
    except BaseException:
        for job in batch.jobs.values():  # never leave a job unsupervised
            _signal_group(job, signal.SIGKILL)
        raise
    return 0


def _take_streams(batch_dir: Path) -> None:
    log_fd = os.open(batch_dir / LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                     0o600)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    # The batch's own lock: held while we live, so that prune leaves its directory.
    lock_fd = os.open(batch_dir / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    fcntl.flock(lock_fd, fcntl.LOCK_EX)
    os.chdir(batch_dir.parent)


def _listen() -> tuple[_Flags, int]:
    """Signal handlers, and the descriptor that signals wake up."""
    flags = _Flags()
    wake_fd, wake_write_fd = os.pipe()
    os.set_blocking(wake_fd, False)
    os.set_blocking(wake_write_fd, False)
    signal.set_wakeup_fd(wake_write_fd)
    signal.signal(signal.SIGUSR1, flags.on_look)
    signal.signal(signal.SIGTERM, flags.on_look)
    signal.signal(signal.SIGCHLD, flags.on_child)
    return flags, wake_fd


def _supervise(batch: Batch, flags: _Flags, wake_fd: int) -> None:
    selector = selectors.DefaultSelector()
    selector.register(wake_fd, selectors.EVENT_READ)
    flags.look = flags.child = True  # markers and exits may have come before we were ready
    while batch.staged or batch.jobs or batch.ending or batch.held:
        for key, _ in selector.select(_timeout(batch)):
            if key.fd == wake_fd:
                with contextlib.suppress(BlockingIOError):
                    while os.read(wake_fd, 4096):
                        pass
            else:
                _read(batch, selector, key.data)
        if flags.child:
            flags.child = False
            _reap(batch)
        if flags.look:
            flags.look = False
            _look(batch, selector)
        _on_time(batch, selector)
        _finish(batch, selector)
    selector.close()


def _timeout(batch: Batch) -> float | None:
    candidates: list[float] = []
    if batch.staged:
        candidates.append(batch.release_by - time.time())
    if batch.timers:
        candidates.append(batch.timers[0][0] - time.monotonic())
    if batch.ending:
        candidates.append(GROUP_POLL_SECONDS)
    return max(0.0, min(candidates)) if candidates else None


def _look(batch: Batch, selector: selectors.BaseSelector) -> None:
    """Act on the markers: staged runs let go or released, running ones stopped."""
    asked: set[str] = set()
    for path in batch.own.path.glob(f"{RELEASE}-*.json"):
        asked.update(json.loads(path.read_bytes())["runs"])
    release = []
    for name, job in list(batch.staged.items()):
        if (job.run.path / STOP).exists():
            log.info("event=run_unstaged launch_id=%s", job.launch_id)
            _let_go(batch, name)
        elif name in asked or (job.run.path / RELEASE).exists():
            release.append(name)
    if release:
        _release(batch, selector, release)
    for job in batch.jobs.values():
        if job.cause is None and (job.run.path / STOP).exists():
            stop = job.run.read_json(STOP)
            grace = job.spec.grace if stop is None else float(stop["grace"])
            _begin_end(batch, job, RunState.STOPPED, grace)


def _let_go(batch: Batch, name: str) -> None:
    job = batch.staged.pop(name)
    _close_gate(job)  # its held shell, if any, exits without running anything
    os.close(job.lock_fd)  # it reads NOT_FOUND now: never started
    if not batch.staged:
        batch.hang_up()


def _release(batch: Batch, selector: selectors.BaseSelector, names: list[str]) -> None:
    jobs = [batch.staged.pop(name) for name in names]
    batch.released.extend(names)
    # Durable before any job starts: a run not in it reads as never started.
    batch.own.write_json(BATCH_RELEASED, {"runs": batch.released})
    statuses = [_open_gate(batch, selector, job) for job in jobs]
    for name, status in zip(names, statuses, strict=True):
        if status.state is RunState.RUNNING:
            batch.running[name] = status.to_dict()
    batch.own.write_json(BATCH_RUNNING, batch.running, durable=False)
    batch.say(RELEASED_LINE)
    log.info("event=batch_released runs=%d", len(jobs))
    if not batch.staged:
        batch.hang_up()


def _hold(batch: Batch, job: Launch) -> None:
    """Start the job's shell ahead, held at its gate; a job given as ``argv``, or
    whose shell cannot start now, is spawned at the release instead (which says
    why it cannot run, if it cannot)."""
    request = job.spec.request
    if request.command is None:
        return
    program, flag, line = argv_of(request)
    gate_read, gate_write = os.pipe()
    try:
        pid, output_fd = _start(job, (program, flag, GATE + line), gate_read)
    except OSError as exc:
        os.close(gate_write)
        log.info("event=hold_failed launch_id=%s error=%r", job.launch_id, str(exc))
        return
    finally:
        os.close(gate_read)
    job.held, job.gate_fd, job.output_fd = pid, gate_write, output_fd
    batch.held[pid] = job


def _close_gate(job: Launch) -> None:
    """Let the held shell go unopened (it exits without running anything)."""
    if job.gate_fd is not None:
        os.close(job.gate_fd)
        job.gate_fd = None
        if job.output_fd is not None:
            os.close(job.output_fd)
            job.output_fd = None


def _open_gate(batch: Batch, selector: selectors.BaseSelector, job: Launch) -> RunStatus:
    """Start the job: open the gate of its held shell, or spawn it now."""
    if job.gate_fd is not None:
        try:
            os.write(job.gate_fd, b"\n")
        except BrokenPipeError:  # the held shell died: it ran nothing
            _close_gate(job)
        else:
            os.close(job.gate_fd)
            job.gate_fd = None
            pid = job.held
            assert pid is not None and job.output_fd is not None
            del batch.held[pid]
            return _started(batch, selector, job, pid, job.output_fd)
    return _spawn(batch, selector, job)


def _start(job: Launch, argv: tuple[str, ...], gate_fd: int | None = None
           ) -> tuple[int, int]:
    """Spawn ``argv`` for the job in a session of its own (with ``gate_fd`` as
    its descriptor :data:`GATE_FD`); its pid and the read end of its output."""
    workdir = job.spec.workdir()
    env = job.spec.job_env()
    read_fd, write_fd = os.pipe()
    actions = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
               (os.POSIX_SPAWN_DUP2, write_fd, 1), (os.POSIX_SPAWN_DUP2, write_fd, 2)]
    if gate_fd is not None:
        actions.append((os.POSIX_SPAWN_DUP2, gate_fd, GATE_FD))
    root = os.getcwd()
    try:
        os.chdir(workdir)
        # The signals Python ignores are not the job's to inherit, as with subprocess.
        pid = os.posix_spawn(_executable(argv[0], env), argv, env, setsid=True,
                             setsigdef=(signal.SIGPIPE, signal.SIGXFSZ), file_actions=actions)
    except BaseException:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)
        os.chdir(root)
    return pid, read_fd


def _spawn(batch: Batch, selector: selectors.BaseSelector, job: Launch) -> RunStatus:
    request = job.spec.request
    try:
        pid, read_fd = _start(job, argv_of(request))
    except OSError as exc:
        job.status = not_executed(request, job.spec.workdir(), exc)
        batch.ending.append(job)
        return job.status
    return _started(batch, selector, job, pid, read_fd)


def _started(batch: Batch, selector: selectors.BaseSelector, job: Launch, pid: int,
             read_fd: int) -> RunStatus:
    request = job.spec.request
    job.status = RunStatus(request.launch_id, RunState.RUNNING, pid=pid,
                           started_at=datetime.now(UTC))
    log.info("event=job_started launch_id=%s pid=%d", request.launch_id, pid)
    os.set_blocking(read_fd, False)
    job.output_fd = read_fd
    job.ring = OutputRing(job.run, request.output_limit, request.launch_id)
    selector.register(read_fd, selectors.EVENT_READ, job)
    batch.jobs[pid] = job
    if request.timeout is not None:
        job.deadline = time.monotonic() + request.timeout
        heapq.heappush(batch.timers, (job.deadline, pid))
    return job.status


def _executable(program: str, env: dict[str, str]) -> str:
    """Where ``program`` is, looked up in the job's own PATH, as a shell would."""
    if "/" in program:
        return program
    for directory in env.get("PATH", os.defpath).split(os.pathsep):
        candidate = os.path.join(directory or ".", program)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise FileNotFoundError(2, "No such file or directory", program)


def _read(batch: Batch, selector: selectors.BaseSelector, job: Launch) -> None:
    assert job.output_fd is not None and job.ring is not None
    try:
        data = os.read(job.output_fd, CHUNK)
    except BlockingIOError:
        return
    if data:
        job.ring.write(data)
        return
    _close_output(selector, job)


def _close_output(selector: selectors.BaseSelector, job: Launch) -> None:
    if job.output_fd is not None:
        selector.unregister(job.output_fd)
        os.close(job.output_fd)
        job.output_fd = None


def _reap(batch: Batch) -> None:
    while True:
        try:
            pid, wait_status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        if (held := batch.held.pop(pid, None)) is not None:
            # Gone before its release, having run nothing: released later, it is
            # spawned afresh.
            _close_gate(held)
            continue
        job = batch.jobs.pop(pid, None)
        if job is None:
            continue
        job.returncode = os.waitstatus_to_exitcode(wait_status)
        # Background processes the job left behind may hold its pipe open for
        # hours: take what is there, don't wait for them.
        job.drain_until = time.monotonic() + DRAIN_SECONDS
        batch.ending.append(job)


def _begin_end(batch: Batch, job: Launch, cause: RunState, grace: float) -> None:
    """Timed out or stopped: SIGTERM to the job's group, SIGKILL after ``grace``."""
    assert job.status is not None and job.status.pid is not None
    job.cause = cause
    job.kill_at = time.monotonic() + grace
    log.info("event=job_terminating launch_id=%s cause=%s grace=%s", job.launch_id,
             cause.value, grace)
    _signal_group(job, signal.SIGTERM)
    heapq.heappush(batch.timers, (job.kill_at, job.status.pid))


def _on_time(batch: Batch, selector: selectors.BaseSelector) -> None:
    if batch.staged and time.time() >= batch.release_by:
        for name in list(batch.staged):
            log.warning("event=run_let_go launch_id=%s reason=%r",
                        batch.staged[name].launch_id, "not released by its slot's deadline")
            _let_go(batch, name)
    now = time.monotonic()
    while batch.timers and batch.timers[0][0] <= now:
        _, pid = heapq.heappop(batch.timers)
        job = batch.jobs.get(pid)
        if job is None:
            continue
        if job.cause is None and job.deadline is not None and job.deadline <= now:
            _begin_end(batch, job, RunState.TIMED_OUT, job.spec.grace)
        elif job.kill_at is not None and job.kill_at <= now:
            _signal_group(job, signal.SIGKILL)


def _finish(batch: Batch, selector: selectors.BaseSelector) -> None:
    """Write the end of every job that exited and whose output is in (or that
    waited long enough), then let their locks go."""
    done = []
    now = time.monotonic()
    for job in batch.ending:
        if job.cause is not None and job.kill_at is not None:
            # Its children get what is left of the grace period, then SIGKILL.
            assert job.status is not None and job.status.pid is not None
            if now < job.kill_at and group_alive(job.status.pid):
                continue
            _signal_group(job, signal.SIGKILL)
            job.kill_at = None
        if job.output_fd is not None and job.drain_until is not None and now < job.drain_until:
            continue
        done.append(job)
    if not done:
        return
    for job in done:
        batch.ending.remove(job)
        _close_output(selector, job)
        if job.ring is not None:
            job.ring.close()
        job.status = _final(job)
        job.run.write_json(STATUS, job.status.to_dict(), durable=False, prepared=True)
    sync(batch.root)
    for job in done:
        status = job.status
        assert status is not None
        log.info("event=run_ended launch_id=%s state=%s exit_code=%s signal=%s",
                 status.launch_id, status.state.value, status.exit_code, status.signal)
        os.close(job.lock_fd)


def _final(job: Launch) -> RunStatus:
    assert job.status is not None
    if job.status.state is not RunState.RUNNING:  # it never ran
        return job.status
    assert job.returncode is not None
    return ended(job.status, job.returncode, job.cause, job.spec.request.timeout)


def _signal_group(job: Launch, signum: int) -> None:
    if job.status is not None and job.status.pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(job.status.pid, signum)

