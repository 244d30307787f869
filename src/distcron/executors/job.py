"""The job's process as the supervisor sees it: spawned in its own process group,
its exit learnt from SIGCHLD, its output read from one pipe, its group signalled.

No asyncio: the supervisor is a fork of the fork server, and a blocking loop
over a selector, woken by signals through :func:`signal.set_wakeup_fd`, is all
it needs; an event loop would cost each launch more CPU than the rest of its
supervision (and the fork server the import of asyncio). Nor subprocess's own
waiting on output: a run ends when the job's own process exits, even if a
background process it left behind still holds its stdout.

The supervisor is single-threaded, so signal handlers run in its one thread,
between two steps of :meth:`Job.watch`.

On failure: spawning raises OSError (no such program, no workdir); signalling a
group that is already gone is not an error.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from types import FrameType

from distcron.executors.output import OutputRing

CHUNK = 64 * 1024


class Job:
    """A running job; create it with :meth:`spawn`. Any signal with a Python
    handler (SIGTERM, for ``stop``) wakes :meth:`watch` up, so that it can look
    at what the handler changed."""

    def __init__(self, popen: subprocess.Popen[bytes], output_fd: int,
                 ring: OutputRing, wake_fd: int, selector: selectors.BaseSelector) -> None:
        self.pid = popen.pid  # also the id of its process group
        self.drained = False  # the output pipe reached EOF
        self._popen = popen
        self._fd = output_fd
        self._ring = ring
        self._wake_fd = wake_fd
        self._selector = selector

    @classmethod
    def spawn(cls, argv: Sequence[str], env: Mapping[str, str], workdir: str,
              ring: OutputRing) -> Job:
        """Start ``argv`` in a new session (so its own process group), with stdin
        from /dev/null and stdout and stderr into one pipe, in write order."""
        # Before the job exists, so that its SIGCHLD cannot come unheard.
        wake_fd, wake_write_fd = os.pipe()
        os.set_blocking(wake_fd, False)
        os.set_blocking(wake_write_fd, False)
        signal.set_wakeup_fd(wake_write_fd)
        signal.signal(signal.SIGCHLD, _wake_only)
        read_fd, write_fd = os.pipe()
        try:
            popen = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=write_fd, stderr=write_fd,
                cwd=workdir, env=dict(env), start_new_session=True)
        except BaseException:
            _stop_waking(wake_fd)
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        os.set_blocking(read_fd, False)
        selector = selectors.DefaultSelector()
        selector.register(read_fd, selectors.EVENT_READ)
        selector.register(wake_fd, selectors.EVENT_READ)
        return cls(popen, read_fd, ring, wake_fd, selector)

    @property
    def exited(self) -> bool:
        return self._popen.poll() is not None

    @property
    def returncode(self) -> int | None:
        """As subprocess says: the exit code, or minus the signal that killed it."""
        return self._popen.returncode

    def watch(self, until: Callable[[], bool], timeout: float | None) -> bool:
        """Copy the job's output into the ring until ``until()`` holds or
        ``timeout`` seconds have passed (``None``: no limit); returns ``until()``.
        ``until`` is asked again after every signal and every read."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not until():
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            for key, _ in self._selector.select(remaining):
                if key.fd == self._fd:
                    self._read()
                else:
                    _drain(self._wake_fd)
        return True

    def signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signum)

    def group_alive(self) -> bool:
        return group_alive(self.pid)

    def close(self) -> None:
        """Stop reading output (what is still in the pipe is dropped) and listening."""
        self._selector.close()
        _stop_waking(self._wake_fd)
        if not self.drained:
            os.close(self._fd)
        self._ring.close()

    def _read(self) -> None:
        try:
            data = os.read(self._fd, CHUNK)
        except BlockingIOError:
            return
        if data:
            self._ring.write(data)
            return
        self._selector.unregister(self._fd)
        os.close(self._fd)
        self.drained = True


def group_alive(pgid: int) -> bool:
    """Whether any process of the group is alive. Zombies don't count: they are
    dead and wait only for their parent to reap them, and an init that reaps
    orphans slowly (some container inits take seconds) must not stretch a grace
    period. Reads /proc, so Linux only."""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as file:
                stat = file.read()
        except OSError:  # it ended while we looked
            continue
        # After "pid (comm) ": state, ppid, pgrp, … (comm may hold ")").
        state, _ppid, pgrp = stat[stat.rindex(b")") + 2:].split()[:3]
        if int(pgrp) == pgid and state != b"Z":
            return True
    return False


def _wake_only(signum: int, frame: FrameType | None) -> None:
    """A handler that does nothing: having one makes the signal wake ``watch``."""


def _drain(fd: int) -> None:
    with contextlib.suppress(BlockingIOError):
        while os.read(fd, 4096):
            pass


def _stop_waking(wake_fd: int) -> None:
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    write_fd = signal.set_wakeup_fd(-1)
    os.close(write_fd)
    os.close(wake_fd)
