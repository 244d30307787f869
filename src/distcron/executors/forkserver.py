"""The fork server: one small process per local executor that forks its supervisors.

A supervisor started as a new interpreter costs some 60 ms of CPU (interpreter
start and imports) before it does anything; two thousand launches due in one
second would wait a minute behind each other on a small machine. So a
:class:`~distcron.executors.local.LocalExecutor` starts, at its first launch,
one ``python -m distcron.executors.forkserver FD`` that has the supervisor's
code imported, and asks it to fork each supervisor, which takes about a
millisecond.

Why a process of its own rather than forks of the replica: the replica has
threads (the store's, the API server's, asyncio's executor), and a fork of a
threaded process inherits locks that other threads held, on which the child
may deadlock. The fork server has one thread and forks only itself. It holds
nothing a job must not see: its environment is :func:`helper_env` (never the
replica's, which may hold ``DISTCRON_TOKEN``); its descriptors are its socket,
stdin and stdout on /dev/null, and stderr shared with the replica (for its own
few log lines; supervisors point theirs at their run's log at once); it has
its own session; its working directory is the executor's run directory.

Protocol. A ``SOCK_SEQPACKET`` socket pair; the executor sends one message per
launch: the run directory's path, with two descriptors (SCM_RIGHTS): the run's
lock, held exclusively (the executor claimed the launch, see
:mod:`distcron.executors.rundir`), and the write end of the launch's handshake
pipe. For each, the fork server forks the supervisor
(:func:`distcron.executors.supervisor.run`), which starts a session of its own
and writes :data:`FORKED` to the handshake pipe, holds the lock until it exits,
and writes ``ready`` once the job is started (or known not to start). When the
fork fails, the fork server writes :data:`FORK_FAILED` and why. So what the
executor has read when the pipe reaches EOF (every copy of its write end is
closed) tells how far the launch got: nothing — the fork server let go of it
unforked; ``forked`` without ``ready`` — its supervisor died before starting
the job, or while; ``ready`` — started.

Supervisors are the fork server's children, not grandchildren made orphans at
once by a second fork, as daemons are: it reaps those that end while it lives,
and init reaps the others once it has exited. A second fork would nearly
double what a launch costs (every fork of the fork server copies its page
tables, and then, page by page, what either process writes) and buy nothing:
the fork server is not the replica, and its death, even by SIGKILL, does
nothing to its children.

On failure:

- The replica dies, even by SIGKILL: the socket reaches EOF; the fork server
  forks what it was already sent, then exits. Supervisors it forked are not
  tied to it and go on.
- The fork server dies (killed, out of memory, or it could not even start):
  messages queued in its socket die with it, and the kernel closes the
  descriptors they carried, so each waiting executor reads nothing before EOF
  and knows that no supervisor was forked for its launch. A send to a dead
  fork server fails with EPIPE at once. Either way :class:`ForkServer` starts
  a new one, for this launch and the next.
- A fork server that seems alive but let a launch go unforked is not trusted
  again: it is killed and replaced.
- A fork server that stops reading (stopped, wedged): sends block until the
  executor's start timeout, then fail (``TimeoutError``).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import NoReturn

import distcron
from distcron.executors import batch, supervisor
from distcron.logs import setup_logging

log = logging.getLogger("distcron.executors")

MODULE = "distcron.executors.forkserver"
FORKED = b"forked\n"
FORK_FAILED = b"fork failed: "
# A message that carries a batch: this, the batch directory's path, and as
# descriptors the handshake pipe's write end then every run's lock.
BATCH = b"batch:"
# A run directory's path, in bytes; paths are at most 4096 bytes on Linux.
MAX_MESSAGE = 8192
# How long a fork server that was asked to exit (its socket closed) may take to
# fork what it was still sent, before it is killed.
EXIT_TIMEOUT = 10.0


def helper_env() -> dict[str, str]:
    """The fork server's environment, which its supervisors inherit: only what
    Python needs to import distcron, wherever it was loaded from."""
    return {"PYTHONPATH": str(Path(distcron.__file__).resolve().parents[1])}


class ForkServerProcess:
    """One running fork server and the executor's end of its socket."""

    def __init__(self, popen: subprocess.Popen[bytes], sock: socket.socket) -> None:
        self._popen = popen
        self._sock = sock

    @classmethod
    def start(cls, cwd: Path, send_timeout: float) -> ForkServerProcess:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            popen = subprocess.Popen(
                [sys.executable, "-m", MODULE, str(theirs.fileno())],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, cwd=cwd,
                env=helper_env(), pass_fds=(theirs.fileno(),), start_new_session=True)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        # A fork server that stops reading must not block a start for ever.
        ours.settimeout(send_timeout)
        log.info("event=fork_server_started pid=%d", popen.pid)
        return cls(popen, ours)

    @property
    def pid(self) -> int:
        return self._popen.pid

    def alive(self) -> bool:
        return self._popen.poll() is None

    def send(self, data: bytes, fds: Sequence[int]) -> None:
        """Hand one message over; on success the fork server has its own copies of
        the descriptors. OSError when it could not be sent."""
        socket.send_fds(self._sock, [data], list(fds), socket.MSG_NOSIGNAL)

    def stop(self, kill: bool) -> None:
        """Shut our end, so that the fork server exits once it has forked what it
        was sent (or kill it at once), and reap it."""
        if kill and self.alive():
            self._popen.kill()
        # Shut down, not closed: another thread may be sending on it right now,
        # and must fail with EPIPE (and go to the successor), not send on a
        # descriptor number that something else got meanwhile.
        with contextlib.suppress(OSError):  # the other end is gone already
            self._sock.shutdown(socket.SHUT_RDWR)
        try:
            self._popen.wait(EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            log.warning("event=fork_server_stuck pid=%d", self.pid)
            self._popen.kill()
            self._popen.wait()

    def close(self) -> None:
        """Close our end; once no thread can be sending on it any more."""
        self._sock.close()


class ForkServer:
    """An executor's fork server, started on first use and again whenever it is
    found dead. Thread-safe: executors hand launches over from worker threads."""

    def __init__(self, cwd: Path, send_timeout: float) -> None:
        self._cwd = cwd
        self._send_timeout = send_timeout
        self._lock = threading.Lock()
        self._process: ForkServerProcess | None = None
        self._replaced: list[ForkServerProcess] = []  # stopped, their sockets open

    def hand_off(self, run_path: Path, lock_fd: int, handshake_fd: int,
                 replacing: ForkServerProcess | None = None) -> ForkServerProcess:
        """Send one launch to the fork server; returns the one that took it.
        ``replacing``: a fork server that let a launch go unforked, not to be used
        again. Raises OSError when the launch could not be sent; the descriptors
        are then still only the caller's."""
        return self._hand_off(os.fsencode(run_path), [lock_fd, handshake_fd], replacing)

    def hand_off_batch(self, batch_dir: Path, handshake_fd: int,
                       lock_fds: Sequence[int]) -> ForkServerProcess:
        """Send a batch of launches (see :mod:`distcron.executors.batch`), as
        :meth:`hand_off` sends one."""
        return self._hand_off(BATCH + os.fsencode(batch_dir), [handshake_fd, *lock_fds], None)

    def _hand_off(self, data: bytes, fds: Sequence[int],
                  replacing: ForkServerProcess | None) -> ForkServerProcess:
        process = self._current(replacing)
        try:
            process.send(data, fds)
        except (BrokenPipeError, ConnectionResetError):
            # It died since it was last used: its successor gets the launch.
            log.warning("event=fork_server_lost pid=%d", process.pid)
            process = self._current(process)
            process.send(data, fds)
        return process

    def close(self) -> None:
        """Let the fork server go, once nothing is being handed off any more."""
        with self._lock:
            process, self._process = self._process, None
            replaced, self._replaced = self._replaced, []
        if process is not None:
            process.stop(kill=False)
            process.close()
        for process in replaced:
            process.close()

    def _current(self, replacing: ForkServerProcess | None) -> ForkServerProcess:
        with self._lock:
            process = self._process
            if process is not None and (process is replacing or not process.alive()):
                process.stop(kill=True)
                self._replaced.append(process)
                process = None
            if process is None:
                process = self._process = ForkServerProcess.start(
                    self._cwd, self._send_timeout)
            return process


# -- the fork server itself -------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(f"usage: python -m {MODULE} SOCKET_FD", file=sys.stderr)
        return 2
    sock = socket.socket(fileno=int(args[0]))
    setup_logging()
    signal.signal(signal.SIGCHLD, _reap_children)
    # What is imported now is shared by every fork; frozen, the collector of a
    # fork never walks it, so the pages stay shared instead of being copied.
    gc.freeze()
    log.info("event=fork_server_ready pid=%d", os.getpid())
    serve(sock)
    log.info("event=fork_server_exiting pid=%d reason=%r", os.getpid(),
             "its executor is gone")
    return 0


def serve(sock: socket.socket) -> None:
    """Fork a supervisor for each launch or batch received, until the executor's
    end closes."""
    while True:
        data, fds, flags, _ = socket.recv_fds(sock, MAX_MESSAGE, batch.BATCH_SIZE + 1)
        if not data:  # EOF
            _close(fds)
            return
        whole = not flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC)
        supervise: Callable[[], int]
        if whole and data.startswith(BATCH) and fds:
            path, handshake_fd = Path(os.fsdecode(data[len(BATCH):])), fds[0]
            supervise = functools.partial(batch.run, path, handshake_fd, fds[1:])
        elif whole and len(fds) == 2:
            path, handshake_fd = Path(os.fsdecode(data)), fds[1]
            supervise = functools.partial(supervisor.run, path, handshake_fd)
        else:
            # Not a message of ours: let it go; its sender sees an empty handshake.
            log.error("event=bad_request size=%d fds=%d flags=%d", len(data), len(fds), flags)
            _close(fds)
            continue
        try:
            _fork(sock, path, handshake_fd, supervise)
        finally:
            # The supervisor has its own copies now (or nobody does).
            _close(fds)


def _fork(sock: socket.socket, path: Path, handshake_fd: int,
          supervise: Callable[[], int]) -> None:
    """Fork a supervisor that runs ``supervise`` (of the run or batch at ``path``)."""
    sys.stderr.flush()  # or the child would write our buffered log lines again
    try:
        pid = os.fork()
    except OSError as exc:
        log.error("event=fork_failed path=%s error=%r", path, str(exc))
        _say(handshake_fd, FORK_FAILED + str(exc).encode() + b"\n")
        return
    if pid == 0:
        _child(sock, handshake_fd, supervise)


def _child(sock: socket.socket, handshake_fd: int, supervise: Callable[[], int]) -> NoReturn:
    """The supervisor's whole life. Never returns into the fork server's loop."""
    code = 1
    try:
        # Our copy of the socket would keep a dead fork server's socket open,
        # and the executor's sends to it would queue instead of failing.
        sock.close()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.setsid()
        _say(handshake_fd, FORKED)
        code = supervise()
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        # Not sys.exit: nothing of the fork server's (atexit, finalizers) must run.
        os._exit(code)


def _reap_children(signum: int, frame: FrameType | None) -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _say(fd: int, message: bytes) -> None:
    # The executor may have stopped listening (it timed out): the fork goes on.
    with contextlib.suppress(BrokenPipeError):
        os.write(fd, message)


def _close(fds: Sequence[int]) -> None:
    for fd in fds:
        os.close(fd)


if __name__ == "__main__":
    sys.exit(main())
