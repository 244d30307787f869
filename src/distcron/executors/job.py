"""The job's process as the supervisor sees it: spawned in its own process group,
its exit learnt from SIGCHLD, its output read from one pipe, its group signalled.

Not asyncio's subprocess support, on purpose: on Python 3.11 its ``wait()``
returns only once the output pipes are closed too, so a job that leaves a
background process holding its stdout would look alive until that process
ends. A run ends when the job's own process exits.

On failure: spawning raises OSError (no such program, no workdir); signalling a
group that is already gone is not an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence

from distcron.executors.output import OutputRing

CHUNK = 64 * 1024


class Job:
    """A running job; create it with :meth:`spawn` inside the supervisor's loop."""

    def __init__(self, popen: subprocess.Popen[bytes], output_fd: int,
                 ring: OutputRing) -> None:
        self.pid = popen.pid  # also the id of its process group
        self.exited = asyncio.Event()
        self.drained = asyncio.Event()  # the output pipe reached EOF
        self._popen = popen
        self._fd = output_fd
        self._ring = ring
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGCHLD, self._reap)
        os.set_blocking(output_fd, False)
        loop.add_reader(output_fd, self._read)
        self._reap()  # it may have exited before the handler was in place

    @classmethod
    def spawn(cls, argv: Sequence[str], env: Mapping[str, str], workdir: str,
              ring: OutputRing) -> Job:
        """Start ``argv`` in a new session (so its own process group), with stdin
        from /dev/null and stdout and stderr into one pipe, in write order."""
        read_fd, write_fd = os.pipe()
        try:
            popen = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=write_fd, stderr=write_fd,
                cwd=workdir, env=dict(env), start_new_session=True)
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        return cls(popen, read_fd, ring)

    @property
    def returncode(self) -> int | None:
        """As subprocess says: the exit code, or minus the signal that killed it."""
        return self._popen.returncode

    def signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signum)

    def group_alive(self) -> bool:
        """Whether any process of the job's group is alive. Zombies don't count:
        they are dead and wait only for their parent to reap them, and an init
        that reaps orphans slowly (some container inits take seconds) must not
        stretch a grace period. Reads /proc, so Linux only."""
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
            if int(pgrp) == self.pid and state != b"Z":
                return True
        return False

    def close(self) -> None:
        """Stop reading output (what is still in the pipe is dropped) and listening."""
        loop = asyncio.get_running_loop()
        loop.remove_signal_handler(signal.SIGCHLD)
        if not self.drained.is_set():
            loop.remove_reader(self._fd)
            os.close(self._fd)
        self._ring.close()

    def _reap(self) -> None:
        if self._popen.poll() is not None:
            self.exited.set()

    def _read(self) -> None:
        try:
            data = os.read(self._fd, CHUNK)
        except BlockingIOError:
            return
        if data:
            self._ring.write(data)
            return
        asyncio.get_running_loop().remove_reader(self._fd)
        os.close(self._fd)
        self.drained.set()
