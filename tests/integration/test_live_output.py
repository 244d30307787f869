"""A running launch's output, followed live through a real ``distcron serve``:
``distcron runs show ID --follow`` prints what the job writes while it runs,
and exits with the run's outcome."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.integration.test_workers_end_to_end import Worker, registered, workers
from tests.serve_harness import TOKEN, Replica, ledger_job, replicas
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

DISTCRON = str(Path(sys.executable).with_name("distcron"))


@pytest.mark.parametrize("executor", ["local", "agent"])
def test_following_a_running_launch_prints_its_output_before_it_ends(
        tmp_path: Path, executor: str) -> None:
    release = tmp_path / "release"
    # It writes a line, then waits for the test to let it finish.
    job = ledger_job("slow", "0 0 1 1 *", tmp_path / "ledger",
                     then=f"echo started; while [ ! -e {release} ]; do sleep 0.1; done; "
                          "echo finished; exit 4", executor=executor)
    config = tmp_path / "jobs.toml"
    config.write_text(job)
    store = f"sqlite:///{tmp_path / 'data' / 'state.db'}"
    member = Replica(tmp_path, "r1", data_dir=tmp_path / "data", config=config)
    agents = [Worker(tmp_path, "w1", store)] if executor == "agent" else []
    with replicas(member) as (r1,), workers(*agents):
        wait_until(r1.is_leader, 10, "leadership")
        if agents:
            wait_until(lambda: registered(r1, "w1"), 20, "the worker to register")
        launch_id = r1.post("/jobs/slow/trigger")["launch_id"]
        wait_until(lambda: r1.run(launch_id)["state"] == "running", 10, "the run to start")
        env = {**os.environ, "DISTCRON_SERVER": r1.url, "DISTCRON_TOKEN": TOKEN}
        follower = subprocess.Popen([DISTCRON, "runs", "show", launch_id, "--follow"],
                                    env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        printed: list[bytes] = []

        def read() -> None:
            assert follower.stdout is not None
            for line in iter(follower.stdout.readline, b""):
                printed.append(line)

        threading.Thread(target=read, daemon=True).start()
        wait_until(lambda: b"started\n" in printed, 20, "the first line while it runs")
        assert r1.run(launch_id)["state"] == "running"
        release.touch()
        assert follower.wait(timeout=30) == 1  # it failed: exit 4
        lines = b"".join(printed).decode().splitlines()
        start = lines.index("--- output (following) ---")
        assert lines[start + 1:] == ["started", "finished", "", "--- failed ---"]
