"""Real ``distcron worker`` processes on a SQLite store file; the test plays the leader.

Jobs append lines to a ledger file outside distcron, so what a test counts is
what really ran. Nothing here sleeps to make a test pass: tests wait for a
condition with a deadline, and jobs that must run for a while wait for a gate
file that the test creates when it wants them to end.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from distcron.executors.base import LaunchRequest
from distcron.executors.rundir import JOB, SUPERVISOR, RunDir
from distcron.store import Store, open_store
from distcron.store.layout import assignment_key, claim_key, report_key, worker_key
from distcron.worker.protocol import Claim, Report, WorkerInfo
from tests.waiting import eventually

SLOT = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class WorkerProcess:
    """One ``distcron worker`` process; ``start`` again after a kill restarts it
    with the same id and data directory."""

    def __init__(self, tmp_path: Path, store_path: Path, worker_id: str, *, name: str,
                 slots: int, tags: str, lease_ttl: float) -> None:
        self.worker_id = worker_id
        self.data_dir = tmp_path / f"data-{name}"
        self.log_path = tmp_path / f"{name}.log"
        self.args = [sys.executable, "-m", "distcron", "worker",
                     "--store", f"sqlite:///{store_path}", "--id", worker_id,
                     "--slots", str(slots), "--tags", tags, "--lease-ttl", str(lease_ttl),
                     "--data-dir", str(self.data_dir), "--log-level", "DEBUG"]
        self.cwd = tmp_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        with open(self.log_path, "ab") as log:  # appended to across restarts
            self.process = subprocess.Popen(self.args, cwd=self.cwd, stdin=subprocess.DEVNULL,
                                            stdout=log, stderr=log)
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    async def exited(self, within: float = 10.0) -> int:
        process = self.process
        assert process is not None
        await eventually(lambda: process.poll() is not None, within,
                         f"worker {self.worker_id} to exit")
        return process.returncode

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    async def logged(self, *needles: str, within: float = 10.0) -> None:
        """Wait until one log line holds every needle."""
        def found() -> bool:
            return any(all(n in line for n in needles) for line in self.log().splitlines())
        await eventually(found, within, f"worker {self.worker_id} to log {needles}")

    def kill_all(self) -> None:
        """Kill the worker and whatever of its runs is still alive."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        runs = self.data_dir / "runs"
        if runs.exists():
            for path in runs.iterdir():
                _kill_run(RunDir(path))


def _kill_run(run: RunDir) -> None:
    # Only while the run's lock is held, so that the pids are still the run's.
    with contextlib.suppress(OSError), run.unowned() as free:
        if free:
            return
        for name, kill in ((JOB, os.killpg), (SUPERVISOR, os.kill)):
            data = run.read_json(name)
            if data is not None:
                with contextlib.suppress(ProcessLookupError):
                    kill(data["pid"], signal.SIGKILL)


class Workers:
    """Makes worker processes for one test and kills them all at its end."""

    def __init__(self, tmp_path: Path, store_path: Path) -> None:
        self.tmp_path = tmp_path
        self.store_path = store_path
        self.made: list[WorkerProcess] = []

    def __call__(self, worker_id: str, *, name: str | None = None, slots: int = 2,
                 tags: str = "", lease_ttl: float = 1.0) -> WorkerProcess:
        """A started worker; ``name`` (default: the id) names its data directory and log."""
        worker = WorkerProcess(self.tmp_path, self.store_path, worker_id,
                               name=name or worker_id, slots=slots, tags=tags,
                               lease_ttl=lease_ttl)
        self.made.append(worker)
        return worker.start()


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "state.db"


@pytest.fixture
async def store(store_path: Path) -> AsyncIterator[Store]:
    store = open_store(f"sqlite:///{store_path}")
    yield store
    await store.close()


@pytest.fixture
def workers(tmp_path: Path, store_path: Path) -> Iterator[Workers]:
    made = Workers(tmp_path, store_path)
    yield made
    for worker in made.made:
        worker.kill_all()


def request(launch_id: str, command: str) -> LaunchRequest:
    return LaunchRequest(launch_id=launch_id, job=launch_id.partition("@")[0], slot=SLOT, fence=7,
                         command=command)


def ledger_command(ledger: Path, gate: Path | None = None, then: str = "") -> str:
    """Appends ``start <launch id>`` to the ledger, waits for ``gate`` if given,
    appends ``end <launch id>``, then runs ``then``."""
    command = f'echo "start $DISTCRON_LAUNCH_ID" >> {ledger}; '
    if gate is not None:
        command += f"while [ ! -e {gate} ]; do sleep 0.02; done; "
    command += f'echo "end $DISTCRON_LAUNCH_ID" >> {ledger}; {then}'
    return command


def ledger(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def assignment(launch: LaunchRequest) -> bytes:
    """The value of ``assign/<worker>/<launch id>``."""
    return json.dumps(launch.to_dict()).encode()


async def assign(store: Store, worker_id: str, launch: LaunchRequest) -> None:
    await store.put(assignment_key(worker_id, launch.launch_id), assignment(launch))


async def registration(store: Store, worker_id: str) -> tuple[WorkerInfo, int] | None:
    """The worker's registration and its lease, or None."""
    kv = await store.get(worker_key(worker_id))
    return None if kv is None else (WorkerInfo.from_json(kv.value), kv.lease)


async def claim(store: Store, launch_id: str) -> Claim | None:
    kv = await store.get(claim_key(launch_id))
    return None if kv is None else Claim.model_validate_json(kv.value)


async def report(store: Store, launch_id: str) -> Report | None:
    kv = await store.get(report_key(launch_id))
    return None if kv is None else Report.from_json(kv.value)


async def final_report(store: Store, launch_id: str, within: float = 10.0) -> Report:
    async def ended() -> Report | None:
        found = await report(store, launch_id)
        return found if found is not None and found.run_status().state.final else None
    return await eventually(ended, within, f"a final report of {launch_id}")
