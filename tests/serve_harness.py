"""Real ``distcron serve`` processes for tests: start, query, signal, read logs.

Jobs in these tests append their launch id to a ledger file outside distcron;
the tests count those lines, so what is checked is what really ran.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from tests.waiting import wait_until

TOKEN = "test-token-7f3a"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def holds_for(predicate: Callable[[], bool], seconds: float, what: str,
              interval: float = 0.1) -> None:
    """Check that ``predicate`` stays true for ``seconds`` (for things that must
    not happen, such as a leader change)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not predicate():
            raise AssertionError(f"stopped holding: {what}")
        time.sleep(interval)


def ledger_job(name: str, schedule: str, ledger: Path, *, then: str = "",
               **keys: str | int | float | bool) -> str:
    """A [[job]] table whose command appends its launch id to ``ledger``, then
    runs ``then``. (JSON scalars are valid TOML values.)"""
    command = f'echo "$DISTCRON_LAUNCH_ID" >> {ledger}'
    if then:
        command += f"; {then}"
    lines = ["[[job]]", f"name = {json.dumps(name)}", f"schedule = {json.dumps(schedule)}",
             f"command = {json.dumps(command)}"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in keys.items()]
    return "\n".join(lines) + "\n"


def read_ledger(ledger: Path) -> list[str]:
    if not ledger.exists():
        return []
    return [line for line in ledger.read_text().splitlines() if line]


class Replica:
    """One ``distcron serve`` process."""

    def __init__(self, workdir: Path, name: str, *, data_dir: Path, config: Path | None = None,
                 lease_ttl: float = 2.0, token: str | None = TOKEN,
                 extra: tuple[str, ...] = (), answers_within: float = 20) -> None:
        self.workdir = workdir
        # It answers once its config file's jobs are in the store.
        self.answers_within = answers_within
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / f"{name}.log"
        self.args = [sys.executable, "-m", "distcron", "serve", "--id", name,
                     "--listen", f"127.0.0.1:{self.port}", "--data-dir", str(data_dir),
                     "--lease-ttl", str(lease_ttl), *extra]
        if config is not None:
            self.args += ["--config", str(config)]
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("DISTCRON_")}
        # A replica without a token leaves a copy of its own for the CLI there.
        self.env["XDG_STATE_HOME"] = str(workdir / "state")
        if token:
            self.env["DISTCRON_TOKEN"] = token
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Replica:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT,
                                         env=self.env, cwd=self.workdir)
        wait_until(self._healthy, self.answers_within, f"{self.name} to answer")
        return self

    def _healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"{self.name} exited with {self.proc.returncode}:\n"
                                 + self.log())
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def get(self, path: str, **params: Any) -> Any:
        response = httpx.get(f"{self.url}{path}", params=params, timeout=5,
                             headers={"Authorization": f"Bearer {TOKEN}"})
        response.raise_for_status()
        return response.json()

    def post(self, path: str) -> Any:
        response = httpx.post(f"{self.url}{path}", timeout=5,
                              headers={"Authorization": f"Bearer {TOKEN}"})
        response.raise_for_status()
        return response.json()

    def is_leader(self) -> bool:
        try:
            return bool(self.get("/healthz")["leader"])
        except httpx.HTTPError:
            return False

    def runs(self, **params: Any) -> list[dict[str, Any]]:
        return list(self.get("/runs", limit=10_000, **params))

    def run(self, launch_id: str) -> dict[str, Any]:
        return dict(self.get(f"/runs/{launch_id}"))

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        assert self.proc is not None
        self.proc.wait(10)

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@contextlib.contextmanager
def replicas(*members: Replica) -> Iterator[tuple[Replica, ...]]:
    """Start the replicas; stop them (and show their logs on failure) at the end."""
    started: list[Replica] = []
    try:
        for member in members:
            # Before it answers: one that never does must be stopped too.
            started.append(member)
            member.start()
        yield members
    except BaseException:
        for member in started:
            sys.stderr.write(f"\n----- log of {member.name} -----\n{member.log()}\n")
        raise
    finally:
        for member in started:
            member.stop()
