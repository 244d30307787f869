"""Real processes in a fresh run directory per test, and ways to look at them.

Nothing here sleeps to make a test pass: tests wait for a condition, with a
deadline (:mod:`tests.waiting`), and jobs that must run for a while wait for a
gate file that the test creates when it wants them to end.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from distcron.executors.base import LaunchRequest
from distcron.executors.forkserver import MODULE as FORK_SERVER_MODULE
from distcron.executors.local import LocalExecutor
from distcron.executors.rundir import RunDir
from distcron.timefmt import utc_iso

SLOT = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)
GRACE = 0.3  # short, so that tests of escalation are quick


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def run_dir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "runs"
    yield path
    _kill_leftovers(path)


NewExecutor = Callable[..., LocalExecutor]


@pytest.fixture
async def new_executor(run_dir: Path) -> AsyncIterator[NewExecutor]:
    """Makes executors, on ``run_dir`` unless given another; closes them (and so
    their fork servers) after the test."""
    made: list[LocalExecutor] = []

    def make(path: Path | None = None, **options: Any) -> LocalExecutor:
        executor = LocalExecutor(path or run_dir,
                                 **{"grace": GRACE, "poll_interval": 0.02, **options})
        made.append(executor)
        return executor

    yield make
    for executor in made:
        await executor.close()


@pytest.fixture
def executor(new_executor: NewExecutor) -> LocalExecutor:
    return new_executor()


def launch(command: str | None = None, *, argv: tuple[str, ...] | None = None,
           job: str = "backup", slot: datetime | None = SLOT, launch_id: str | None = None,
           env: Mapping[str, str] | None = None, workdir: str | None = None,
           timeout: float | None = None, output_limit: int = 65536) -> LaunchRequest:
    if launch_id is None:
        launch_id = f"{job}@{utc_iso(slot) if slot else 'manual-1'}"
    return LaunchRequest(launch_id=launch_id, job=job, slot=slot, fence=42, command=command,
                         argv=argv, env=dict(env or {}), workdir=workdir, timeout=timeout,
                         output_limit=output_limit)


def gated(gate: Path, then: str = "exit 0") -> str:
    """A shell command that waits for ``gate`` to exist, then runs ``then``."""
    return f"while [ ! -e '{gate}' ]; do sleep 0.02; done; {then}"


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def parent_of(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_bytes()
    return int(stat[stat.rindex(b")") + 2:].split()[1])


def fork_servers(parent: int) -> list[int]:
    """The live fork servers that ``parent`` started. (Supervisors run the same
    command line, but are the fork servers' children.)"""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            stat = (entry / "stat").read_bytes()
        except OSError:  # it ended while we looked
            continue
        state, ppid = stat[stat.rindex(b")") + 2:].split()[:2]
        if (FORK_SERVER_MODULE.encode() in cmdline and int(ppid) == parent
                and state != b"Z"):
            found.append(int(entry.name))
    return found


def one_fork_server(parent: int) -> int:
    servers = fork_servers(parent)
    assert len(servers) == 1, f"fork servers of {parent}: {servers}"
    return servers[0]


def _kill_leftovers(run_dir: Path) -> None:
    """Kill what a failed test may have left running: each job's group, then its
    supervisor or batch supervisor (only while it holds the run's lock, so the
    pids are still theirs)."""
    if not run_dir.exists():
        return
    groups, supervisors = set(), set()
    for path in run_dir.iterdir():
        run = RunDir(path)
        with contextlib.suppress(OSError), run.unowned() as free:
            if free:
                continue
            if (job := run.job()) is not None:
                groups.add(int(job["pid"]))
            if (supervisor := run.supervisor_pid()) is not None:
                supervisors.add(supervisor)
    for kill, pids in ((os.killpg, groups), (os.kill, supervisors)):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                kill(pid, signal.SIGKILL)
