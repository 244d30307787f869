"""A replica and real worker agents on one store: launches go to the least busy
worker that fits, a worker killed mid-run loses its run while later slots go
elsewhere (on SQLite and on a real etcd cluster), and a job that replaces its
live run gets that run stopped on its worker. Jobs append their launch ids to a
ledger file; the tests count it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.processes import gone
from tests.serve_harness import Replica, ledger_job, read_ledger, replicas
from tests.waiting import wait_until

pytestmark = pytest.mark.slow


class Worker:
    def __init__(self, tmp_path: Path, worker_id: str, store: str, *, slots: int = 2,
                 tags: str = "") -> None:
        self.worker_id = worker_id
        self.log_path = tmp_path / f"worker-{worker_id}.log"
        self.args = [sys.executable, "-m", "distcron", "worker", "--store", store,
                     "--id", worker_id, "--slots", str(slots), "--lease-ttl", "1",
                     "--data-dir", str(tmp_path / f"worker-{worker_id}")]
        if tags:
            self.args += ["--tags", tags]
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("DISTCRON_")}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Worker:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT,
                                         env=self.env)
        return self

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(15)


@contextlib.contextmanager
def workers(*members: Worker) -> Iterator[tuple[Worker, ...]]:
    try:
        yield tuple(member.start() for member in members)
    except BaseException:
        for member in members:
            sys.stderr.write(f"\n----- log of worker {member.worker_id} -----\n"
                             + member.log_path.read_text(errors="replace"))
        raise
    finally:
        for member in members:
            member.stop()


def registered(replica: Replica, *ids: str) -> bool:
    return {w["id"] for w in replica.get("/status")["workers"]} >= set(ids)


def test_agent_launches_run_on_a_worker_whose_tags_fit(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    store = f"sqlite:///{tmp_path / 'data' / 'state.db'}"
    config = tmp_path / "jobs.toml"
    config.write_text(ledger_job("tagged", "* * * * * *", ledger, executor="agent",
                                 concurrency="allow") + 'tags = ["gpu"]\n')
    member = Replica(tmp_path, "r1", data_dir=tmp_path / "data", config=config)
    with replicas(member), workers(Worker(tmp_path, "plain", store),
                                   Worker(tmp_path, "gpu", store, tags="gpu")):
        wait_until(lambda: registered(member, "plain", "gpu"), 20, "both workers")
        wait_until(lambda: len(read_ledger(ledger)) >= 3, 20, "three runs")
        first = read_ledger(ledger)[0]
        record = wait_until(lambda: (r := member.run(first))["state"] == "succeeded" and r,
                            15, "the first run's record")
        assert record["worker"] == "gpu" and record["exit_code"] == 0
        assert {member.run(i)["worker"] for i in read_ledger(ledger)[:3]} == {"gpu"}


def test_a_worker_killed_mid_run_loses_its_run_and_later_slots_go_elsewhere(
        tmp_path: Path, store_url: str) -> None:
    ledger = tmp_path / "ledger"
    config = tmp_path / "jobs.toml"
    config.write_text(ledger_job("long", "*/2 * * * * *", ledger, then="sleep 30",
                                 executor="agent", concurrency="allow"))
    member = Replica(tmp_path, "r1", data_dir=tmp_path / "data", config=config,
                     extra=("--store", store_url))
    a, b = (Worker(tmp_path, "a", store_url, slots=1),
            Worker(tmp_path, "b", store_url, slots=1))
    with replicas(member), workers(a, b):
        wait_until(lambda: registered(member, "a", "b"), 20, "both workers")
        first = wait_until(lambda: read_ledger(ledger)[:1], 20, "a first run")[0]
        victim = a if member.run(first)["worker"] == "a" else b
        survivor = b if victim is a else a
        wait_until(lambda: member.run(first)["state"] == "running", 10, "the run to start")
        victim.kill()
        lost = wait_until(lambda: (r := member.run(first))["state"] == "lost" and r, 30,
                          "the run to be declared lost")
        assert f"worker {victim.worker_id} vanished" in lost["reason"]
        later = wait_until(lambda: [i for i in read_ledger(ledger)
                                    if member.run(i)["worker"] == survivor.worker_id], 30,
                           "a later slot on the other worker")
        assert later
        assert all(n == 1 for n in Counter(read_ledger(ledger)).values())


def test_launches_land_mostly_on_the_least_loaded_workers(
        tmp_path: Path, etcd_url: str) -> None:
    ledger = tmp_path / "ledger"
    config = tmp_path / "jobs.toml"
    # Each job's next slot is staged (taking a worker's slot) as its last one is
    # released: four jobs hold up to eight of the sixteen slots.
    config.write_text("".join(ledger_job(f"spread-{n}", "* * * * * *", ledger,
                                         executor="agent", concurrency="allow")
                              for n in range(4)))
    loads = {"idle": 0.1, "light": 0.5, "busy": 0.9, "swamped": 1.5}
    fleet = []
    for worker_id, load in loads.items():
        load_file = tmp_path / f"{worker_id}.load"
        load_file.write_text(str(load))
        worker = Worker(tmp_path, worker_id, etcd_url, slots=4)
        worker.args += ["--load-file", str(load_file)]
        fleet.append(worker)
    member = Replica(tmp_path, "r1", data_dir=tmp_path / "data", config=config,
                     extra=("--store", etcd_url))
    with replicas(member), workers(*fleet):
        wait_until(lambda: registered(member, *loads), 20, "every worker")
        wait_until(lambda: sum(r["state"] == "succeeded" for r in member.runs()) >= 120, 90,
                   "120 launches")
        placed = Counter(r["worker"] for r in member.runs() if r["state"] == "succeeded")
    # The two least loaded take most; a worker never gets more than a less loaded
    # one (when all of a worker's slots are busy the next in line gets the launch).
    assert placed["idle"] + placed["light"] > 2 * (placed["busy"] + placed["swamped"]), placed
    assert placed["idle"] >= placed["busy"] >= placed["swamped"], placed
    assert placed["light"] >= placed["busy"], placed


def test_replace_stops_the_earlier_run_on_its_worker_and_launches_the_next(
        tmp_path: Path) -> None:
    ledger, pids = tmp_path / "ledger", tmp_path / "pids"
    store = f"sqlite:///{tmp_path / 'data' / 'state.db'}"
    config = tmp_path / "jobs.toml"
    # Each run would last 30 s, its interval is 2 s: each slot replaces the run
    # of the one before. "$$" is the job's shell, its process group's leader.
    config.write_text(ledger_job("replaced", "*/2 * * * * *", ledger,
                                 then=f'echo "$DISTCRON_LAUNCH_ID $$" >> {pids}; sleep 30',
                                 executor="agent", concurrency="replace"))
    member = Replica(tmp_path, "r1", data_dir=tmp_path / "data", config=config)
    worker = Worker(tmp_path, "w", store, slots=2)
    with replicas(member), workers(worker):
        wait_until(lambda: registered(member, "w"), 20, "the worker")
        first, second, third = wait_until(
            lambda: len(ids := read_ledger(ledger)) >= 3 and ids[:3], 30, "three launches")
        for earlier, later in ((first, second), (second, third)):
            record = wait_until(lambda e=earlier: (r := member.run(e))["state"] == "stopped"
                                and r, 20, f"{earlier} to be recorded stopped")
            assert record["worker"] == "w" and record["reason"] == f"replaced by {later}"
            assert record["ended_at"] and record["exit_code"] is None
        pid_of = dict(line.split() for line in read_ledger(pids))
        wait_until(lambda: gone(int(pid_of[first])) and gone(int(pid_of[second])), 10,
                   "the stopped runs' processes to be gone")
        assert "event=run_stopping launch_id=" + first in worker.log_path.read_text()
        # Each slot ran once, and every run but the newest two (which may still
        # run, or be stopping) ended stopped, replaced by the next.
        launched = read_ledger(ledger)
        assert all(n == 1 for n in Counter(launched).values()), launched
        wait_until(lambda: all(member.run(i)["state"] == "stopped" for i in launched[:-2]),
                   20, "every earlier run to be recorded stopped")


def test_a_failed_run_on_a_worker_is_retried_there_as_a_run_of_its_own(tmp_path: Path) -> None:
    """Each attempt is a run of its own for the worker (``<launch id>~2``): the
    retry really runs, instead of the worker answering with the first attempt's end."""
    ledger, marker = tmp_path / "ledger", tmp_path / "failed-once"
    store = f"sqlite:///{tmp_path / 'data' / 'state.db'}"
    config = tmp_path / "jobs.toml"
    config.write_text(ledger_job(
        "flaky", "0 0 1 1 *", ledger, executor="agent",
        then=f"test -e {marker} || {{ touch {marker}; exit 3; }}")
        + 'retries = 2\nretry_backoff = "1s"\n')
    member = Replica(tmp_path, "r1", data_dir=tmp_path / "data", config=config)
    with replicas(member), workers(Worker(tmp_path, "w1", store)):
        wait_until(lambda: registered(member, "w1"), 20, "the worker")
        launch_id = member.post("/jobs/flaky/trigger")["launch_id"]
        record = wait_until(lambda: (r := member.run(launch_id))["state"] == "succeeded" and r,
                            30, "the retry to succeed")
        assert record["attempt"] == 2 and record["worker"] == "w1"
        assert read_ledger(ledger) == [launch_id, f"{launch_id}~2"]
