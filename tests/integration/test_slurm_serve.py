"""The whole service launching through a real one-node Slurm: ``distcron serve``
replicas with ``executor = "slurm"`` jobs. What is checked is what Slurm holds
(its jobs of each launch id) and what the jobs wrote."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.serve_harness import Replica, ledger_job, read_ledger, replicas
from tests.slurm_cluster import SlurmCluster, running_slurm
from tests.waiting import wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def slurm() -> Iterator[SlurmCluster]:
    with running_slurm() as cluster:
        yield cluster


def write_config(path: Path, slurm: SlurmCluster, *jobs: str) -> Path:
    serve = ["[serve]", f"slurm_output_dir = {json.dumps(str(slurm.root / 'runs'))}",
             f"slurm_conf = {json.dumps(str(slurm.conf))}", 'slurm_cluster = "test"', ""]
    path.write_text("\n".join(serve) + "\n".join(jobs))
    return path


def ended(replica: Replica, job: str) -> list[dict[str, object]]:
    return [r for r in replica.runs(job=job) if r["state"] in ("succeeded", "failed")]


def test_seconds_schedules_run_through_slurm_with_their_exit_codes(
        tmp_path: Path, slurm: SlurmCluster) -> None:
    ledger = tmp_path / "ledger"
    config = write_config(
        tmp_path / "jobs.toml", slurm,
        ledger_job("ok", "* * * * * *", ledger, executor="slurm", concurrency="allow"),
        ledger_job("bad", "*/2 * * * * *", ledger, then="exit 5", executor="slurm",
                   concurrency="allow"))
    with replicas(Replica(tmp_path, "r1", data_dir=tmp_path / "data", config=config)) as (r1,):
        oks = wait_until(lambda: (runs := ended(r1, "ok")) and len(runs) >= 3 and runs, 60,
                         "three ended runs of ok")
        bads = wait_until(lambda: (runs := ended(r1, "bad")) and len(runs) >= 2 and runs, 60,
                          "two ended runs of bad")
        assert {(r["state"], r["exit_code"]) for r in oks} == {("succeeded", 0)}
        assert {(r["state"], r["exit_code"]) for r in bads} == {("failed", 5)}
        detail = r1.run(str(oks[0]["launch_id"]))
        assert detail["executor"] == "slurm" and detail["location"] == "slurm:test"
        for run in [*oks, *bads]:
            assert len(slurm.jobs_named(str(run["launch_id"]))) == 1
        launched = read_ledger(ledger)
        assert len(launched) == len(set(launched))


def test_a_job_larger_than_the_node_is_shown_waiting_then_missed(
        tmp_path: Path, slurm: SlurmCluster) -> None:
    config = write_config(
        tmp_path / "jobs.toml", slurm,
        ledger_job("huge", "*/30 * * * * *", tmp_path / "ledger", executor="slurm",
                   cpus=slurm.cpus + 8, starting_deadline="10s", time_limit="5m"))
    with replicas(Replica(tmp_path, "r1", data_dir=tmp_path / "data", config=config)) as (r1,):
        waiting = wait_until(
            lambda: next((r for r in r1.runs(job="huge")
                          if r.get("cause") == "waiting_for_resources"), None),
            40, "a launch shown waiting for resources")
        assert waiting["state"] == "queued"
        assert str(waiting["reason"]).startswith("pending in Slurm: ")
        assert waiting["reason"] != "pending in Slurm: None"
        metrics = httpx.get(f"{r1.url}/metrics", timeout=5).text
        assert 'distcron_launches_waiting_for_resources{job="huge"} 1.0' in metrics
        launch_id = str(waiting["launch_id"])
        listed = subprocess.run(
            [sys.executable, "-m", "distcron", "runs", "--job", "huge", "--server", r1.url],
            env=r1.env, capture_output=True, text=True, timeout=30, check=True).stdout
        [row] = [line for line in listed.splitlines() if line.startswith(waiting["launch_id"])]
        assert row.split()[1] == "queued" and waiting["reason"][:20] in row, row
        missed = wait_until(lambda: (r := r1.run(launch_id))["state"] == "missed" and r, 30,
                            "the launch to be missed at its deadline")
        assert missed["cause"] == "deadline"
        assert "starting deadline" in str(missed["reason"])
        assert len(slurm.jobs_named(launch_id)) == 1
        assert not (slurm.root / "runs" / launch_id / "started").exists()


def test_pausing_a_job_cancels_its_launch_pending_in_slurm(
        tmp_path: Path, slurm: SlurmCluster) -> None:
    config = write_config(
        tmp_path / "jobs.toml", slurm,
        ledger_job("huge", "0 0 1 1 *", tmp_path / "ledger", executor="slurm",
                   cpus=slurm.cpus + 8, time_limit="5m"))
    with replicas(Replica(tmp_path, "r1", data_dir=tmp_path / "data", config=config)) as (r1,):
        wait_until(r1.is_leader, 15, "a leader")
        launch_id = str(r1.post("/jobs/huge/trigger")["launch_id"])
        waiting = wait_until(
            lambda: [r for r in r1.runs(job="huge") if r["launch_id"] == launch_id
                     and r.get("cause") == "waiting_for_resources"],
            40, "the triggered launch to wait for resources")
        assert waiting[0]["state"] == "queued"
        r1.post("/jobs/huge/pause")
        stopped = wait_until(lambda: (r := r1.run(launch_id))["state"] == "stopped" and r, 30,
                             "the pending launch to be stopped")
        assert (stopped["cause"], stopped["reason"]) == ("paused", "the job was paused")
        assert len(slurm.jobs_named(launch_id)) <= 1
        assert not (slurm.root / "runs" / launch_id / "started").exists()
        wait_until(lambda: not slurm.run("squeue", "-h", f"--name={launch_id}").strip(), 30,
                   "Slurm to drop the cancelled job")


def test_a_leader_killed_mid_burst_leaves_every_launch_in_slurm_once(
        tmp_path: Path, slurm: SlurmCluster) -> None:
    ledger = tmp_path / "ledger"
    jobs = [ledger_job(f"burst{i:03d}", "*/10 * * * * *", ledger, executor="slurm",
                       concurrency="allow") for i in range(120)]
    config = write_config(tmp_path / "jobs.toml", slurm, *jobs)
    data = tmp_path / "data"
    a = Replica(tmp_path, "a", data_dir=data, config=config)
    b = Replica(tmp_path, "b", data_dir=data, config=config)
    with replicas(a, b):
        leader = wait_until(lambda: next((r for r in (a, b) if r.is_leader()), None), 10,
                            "a leader")
        follower = b if leader is a else a

        def mid_burst() -> bool:
            counts = Counter(name.rsplit("@", 1)[-1] for name in slurm.all_job_names())
            return any(0 < n < len(jobs) for n in counts.values())

        wait_until(mid_burst, 30, "a burst half submitted", interval=0.01)
        leader.signal(signal.SIGKILL)
        assert leader.proc is not None
        leader.proc.wait(10)
        wait_until(follower.is_leader, 15, "the follower to take over")
        # Every slot of the burst the dead leader was submitting is launched.
        slot = wait_until(lambda: next(
            (s for s, n in Counter(name.rsplit("@", 1)[-1]
                                   for name in slurm.all_job_names()).items()
             if n == len(jobs)), None), 60, "a whole burst in Slurm")
        names = Counter(slurm.all_job_names())
        assert all(n == 1 for n in names.values()), [k for k, n in names.items() if n > 1]
        ids = {str(r["launch_id"]) for r in follower.runs() if r["state"] != "skipped"}
        assert {f"burst{i:03d}@{slot}" for i in range(len(jobs))} <= ids
        ran = Counter(read_ledger(ledger))
        assert all(n == 1 for n in ran.values())


def test_launches_wait_for_a_stopped_controller_and_none_is_doubled(
        tmp_path: Path, slurm: SlurmCluster) -> None:
    ledger = tmp_path / "ledger"
    config = write_config(
        tmp_path / "jobs.toml", slurm,
        ledger_job("steady", "* * * * * *", ledger, executor="slurm", concurrency="allow"))
    with replicas(Replica(tmp_path, "r1", data_dir=tmp_path / "data", config=config)) as (r1,):
        wait_until(lambda: len(read_ledger(ledger)) >= 2, 60, "runs before the outage")
        slurm.stop_controller()
        during = wait_until(lambda: [r for r in r1.runs(job="steady")
                                     if r["state"] == "launching"], 20,
                            "launches waiting for the controller")
        slurm.start_controller()
        waited = str(during[-1]["launch_id"])
        wait_until(lambda: r1.run(waited)["state"] == "succeeded", 60,
                   "a launch due during the outage to run")
        wait_until(lambda: len(read_ledger(ledger)) >= 6, 60, "runs after the outage")
        names = Counter(slurm.all_job_names())
        assert all(n == 1 for n in names.values()), [k for k, n in names.items() if n > 1]
        ran = Counter(read_ledger(ledger))
        assert all(n == 1 for n in ran.values())


def test_a_new_leader_adopts_a_launch_waiting_in_slurm(tmp_path: Path,
                                                        slurm: SlurmCluster) -> None:
    config = write_config(
        tmp_path / "jobs.toml", slurm,
        ledger_job("huge", "*/30 * * * * *", tmp_path / "ledger", executor="slurm",
                   cpus=slurm.cpus + 8, starting_deadline="12s", time_limit="5m"))
    data = tmp_path / "data"
    a = Replica(tmp_path, "a", data_dir=data, config=config)
    b = Replica(tmp_path, "b", data_dir=data, config=config)
    with replicas(a, b):
        leader = wait_until(lambda: next((r for r in (a, b) if r.is_leader()), None), 10,
                            "a leader")
        follower = b if leader is a else a
        waiting = wait_until(
            lambda: next((r for r in leader.runs(job="huge")
                          if r.get("cause") == "waiting_for_resources"), None),
            40, "a launch shown waiting for resources")
        assert waiting["state"] == "queued"
        launch_id = str(waiting["launch_id"])
        leader.kill()
        wait_until(follower.is_leader, 15, "the follower to take over")
        missed = wait_until(lambda: (r := follower.run(launch_id))["state"] == "missed" and r,
                            30, "the adopted launch to be missed at its deadline")
        assert missed["cause"] == "deadline"
        assert len(slurm.jobs_named(launch_id)) == 1
        assert "reconcile_adopt" in follower.log()
