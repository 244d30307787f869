"""The whole service on its embedded default: real ``distcron serve`` processes on
one SQLite file, real jobs, real signals. Jobs append their launch ids to a
ledger file; the tests count what really ran."""

from __future__ import annotations

import itertools
import signal
import subprocess
import sys
import threading
from collections import Counter
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from distcron import __version__
from tests.serve_harness import (
    TOKEN,
    Replica,
    free_port,
    holds_for,
    ledger_job,
    read_ledger,
    replicas,
)
from tests.waiting import wait_until

pytestmark = pytest.mark.slow


def slot_of(launch_id: str) -> datetime:
    return datetime.fromisoformat(launch_id.split("@", 1)[1].replace("Z", "+00:00"))


def write_config(path: Path, *jobs: str) -> Path:
    path.write_text("\n".join(jobs))
    return path


def test_a_seconds_schedule_runs_every_slot_on_time(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    config = write_config(tmp_path / "jobs.toml", ledger_job("tick", "* * * * * *", ledger))
    with replicas(Replica(tmp_path, "r1", data_dir=tmp_path / "data", config=config)) as (r1,):
        wait_until(lambda: len(read_ledger(ledger)) >= 4, 20, "four runs")
        launched = read_ledger(ledger)
        slots = [slot_of(i) for i in launched]
        assert slots == sorted(slots) and len(set(slots)) == len(slots)
        assert all(b - a == timedelta(seconds=1) for a, b in itertools.pairwise(slots))
        wait_until(lambda: r1.run(launched[0])["state"] == "succeeded", 10, "the first run")
        first = r1.run(launched[0])
        started = datetime.fromisoformat(first["started_at"])
        assert timedelta(0) <= started - slot_of(first["launch_id"]) < timedelta(seconds=1)
        assert first["exit_code"] == 0


def test_forbid_skips_the_slots_of_a_run_that_outlasts_its_interval(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    config = write_config(tmp_path / "jobs.toml",
                          ledger_job("slow", "* * * * * *", ledger, then="sleep 2.5"))
    with replicas(Replica(tmp_path, "r1", data_dir=tmp_path / "data", config=config)) as (r1,):
        wait_until(lambda: len(read_ledger(ledger)) >= 2, 20, "two runs")
        runs = wait_until(lambda: [r for r in r1.runs(job="slow") if r["state"] == "skipped"],
                          10, "a skipped record")
        first, second = (slot_of(i) for i in read_ledger(ledger)[:2])
        assert second - first >= timedelta(seconds=3)
        span = runs[-1]
        assert span["reason"].startswith("overlap: slow@")
        covered = span.get("count", 1)
        assert covered >= 2  # a 2.5 s run blocks at least the two slots after it


def test_queue_runs_one_waiting_slot_after_the_live_one(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    config = write_config(tmp_path / "jobs.toml", ledger_job(
        "queued", "*/2 * * * * *", ledger, then="sleep 3", concurrency="queue"))
    with replicas(Replica(tmp_path, "r1", data_dir=tmp_path / "data", config=config)) as (r1,):
        wait_until(lambda: len(read_ledger(ledger)) >= 2, 20, "two runs")
        first, second = read_ledger(ledger)[:2]
        record = r1.run(second)
        assert slot_of(second) - slot_of(first) == timedelta(seconds=2)
        # It waited for the first to end: it started about a second after its slot.
        wait_until(lambda: r1.run(second)["started_at"], 10, "the queued run to start")
        started = datetime.fromisoformat(r1.run(second)["started_at"])
        assert started - slot_of(second) >= timedelta(seconds=0.5), record


def test_a_replica_killed_mid_run_learns_on_restart_what_became_of_its_runs(
        tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    done = tmp_path / "done"
    config = write_config(
        tmp_path / "jobs.toml",
        ledger_job("short", "*/5 * * * * *", ledger, then=f"sleep 1; touch {done}; exit 3"),
        ledger_job("long", "*/5 * * * * *", ledger, then="sleep 4"))
    data = tmp_path / "data"
    first = Replica(tmp_path, "r1", data_dir=data, config=config)
    with replicas(first):
        wait_until(lambda: len(read_ledger(ledger)) >= 2, 20, "both jobs to start")
        launched = sorted(read_ledger(ledger))
        wait_until(lambda: all(first.run(i)["state"] == "running" for i in launched), 5,
                   "both runs to be recorded running")
        first.kill()
    wait_until(done.exists, 10, "the short run to finish while no replica runs")
    again = Replica(tmp_path, "r1", data_dir=data, config=config)
    with replicas(again):
        long_id = next(i for i in launched if i.startswith("long@"))
        short_id = next(i for i in launched if i.startswith("short@"))
        short = wait_until(lambda: (r := again.run(short_id))["state"] != "running" and r,
                           15, "the short run's outcome")
        assert short["state"] == "failed" and short["exit_code"] == 3
        assert short["ended_at"] is not None
        long = wait_until(lambda: (r := again.run(long_id))["state"] == "succeeded" and r,
                          15, "the adopted long run to end")
        assert long["exit_code"] == 0
        counts = Counter(read_ledger(ledger))
        assert counts[short_id] == 1 and counts[long_id] == 1


def test_two_replicas_on_one_file_hand_over_without_a_doubled_or_lost_slot(
        tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    # concurrency "allow": a slot caught up late may overlap the next one, and
    # what is checked here is that every slot is launched exactly once.
    config = write_config(tmp_path / "jobs.toml",
                          ledger_job("tick", "* * * * * *", ledger, concurrency="allow"))
    data = tmp_path / "data"
    a = Replica(tmp_path, "a", data_dir=data, config=config)
    b = Replica(tmp_path, "b", data_dir=data, config=config)
    with replicas(a, b):
        leader = wait_until(lambda: next((r for r in (a, b) if r.is_leader()), None), 10,
                            "a leader")
        follower = b if leader is a else a
        assert not follower.is_leader()
        wait_until(lambda: len(read_ledger(ledger)) >= 3, 15, "runs under the first leader")
        leader.kill()
        before = len(read_ledger(ledger))
        wait_until(follower.is_leader, 15, "the follower to take over")
        wait_until(lambda: len(read_ledger(ledger)) >= before + 3, 15, "runs after takeover")
        launched = read_ledger(ledger)
        assert len(launched) == len(set(launched)), "a slot was launched twice"
        slots = sorted(slot_of(i) for i in launched)
        gaps = [b - a for a, b in itertools.pairwise(slots)]
        assert gaps == [timedelta(seconds=1)] * len(gaps), "a slot was lost in the takeover"


def test_a_stopped_leader_resigns_so_the_follower_need_not_wait_for_its_lease(
        tmp_path: Path) -> None:
    data = tmp_path / "data"
    # A lease far longer than the test's patience: only resignation can explain
    # a quick takeover.
    a = Replica(tmp_path, "a", data_dir=data, lease_ttl=60)
    b = Replica(tmp_path, "b", data_dir=data, lease_ttl=60)
    with replicas(a, b):
        leader = wait_until(lambda: next((r for r in (a, b) if r.is_leader()), None), 10,
                            "a leader")
        follower = b if leader is a else a
        assert leader.stop() == 0
        wait_until(follower.is_leader, 10, "the follower to take over")
        status = follower.get("/status")
        assert status["leader"] == follower.name
        assert [r["id"] for r in status["replicas"]] == [follower.name]


def test_a_bad_jobs_file_is_rejected_whole_and_changes_nothing(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    good = write_config(tmp_path / "jobs.toml", ledger_job("keep", "0 0 1 1 *", ledger))
    with replicas(Replica(tmp_path, "r1", data_dir=tmp_path / "data", config=good)) as (r1,):
        bad = tmp_path / "bad.toml"
        bad.write_text(ledger_job("fresh", "0 0 1 1 *", ledger)
                       + ledger_job("broken", "0 0 31 2 *", ledger)
                       + ledger_job("typo", "* * * * *", ledger, timzone="UTC"))
        env = {"DISTCRON_SERVER": r1.url, "DISTCRON_TOKEN": TOKEN, "PATH": "/usr/bin:/bin"}
        result = subprocess.run([sys.executable, "-m", "distcron", "jobs", "apply", str(bad)],
                                capture_output=True, text=True, check=False, env=env, timeout=30)
        assert result.returncode == 2
        assert "broken" in result.stderr and "schedule" in result.stderr
        assert "typo" in result.stderr and "timezone" in result.stderr
        assert [job["name"] for job in r1.get("/jobs")] == ["keep"]


def test_a_reload_of_a_missing_or_broken_file_changes_nothing_and_a_good_one_applies(
        tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    config = write_config(tmp_path / "jobs.toml", ledger_job("keep", "0 0 1 1 *", ledger))
    with replicas(Replica(tmp_path, "r1", data_dir=tmp_path / "data", config=config)) as (r1,):
        config.unlink()
        r1.signal(signal.SIGHUP)
        wait_until(lambda: "event=jobs_file_rejected" in r1.log(), 10, "the reload to fail")
        config.write_text("[[job]\nname = ")
        r1.signal(signal.SIGHUP)
        wait_until(lambda: r1.log().count("event=jobs_file_rejected") == 2, 10,
                   "the second reload to fail")
        assert [job["name"] for job in r1.get("/jobs")] == ["keep"]
        assert r1.proc is not None and r1.proc.poll() is None
        write_config(config, ledger_job("fresh", "0 0 1 1 *", ledger))
        r1.signal(signal.SIGHUP)
        wait_until(lambda: [job["name"] for job in r1.get("/jobs")] == ["fresh"], 10,
                   "the good file to apply")


def test_a_replica_refuses_a_bad_config_file_and_starts_nothing(tmp_path: Path) -> None:
    config = tmp_path / "jobs.toml"
    config.write_text(ledger_job("broken", "61 * * * *", tmp_path / "ledger"))
    member = Replica(tmp_path, "r1", data_dir=tmp_path / "data", config=config)
    result = subprocess.run(member.args, capture_output=True, text=True, check=False,
                            env=member.env,
                            cwd=tmp_path, timeout=30)
    assert result.returncode != 0
    assert "broken" in result.stderr and "minute" in result.stderr


def test_the_api_refuses_changes_without_the_token(tmp_path: Path) -> None:
    with replicas(Replica(tmp_path, "r1", data_dir=tmp_path / "data")) as (r1,):
        spec = {"name": "x", "schedule": "* * * * *", "command": "true"}
        assert httpx.put(f"{r1.url}/jobs/x", json=spec).status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert httpx.put(f"{r1.url}/jobs/x", json=spec, headers=wrong).status_code == 401
        assert r1.get("/jobs") == []


def test_a_replica_will_not_listen_beyond_loopback_without_a_token(tmp_path: Path) -> None:
    member = Replica(tmp_path, "r1", data_dir=tmp_path / "data", token=None,
                     extra=("--listen", f"0.0.0.0:{free_port()}"))
    result = subprocess.run(member.args, capture_output=True, text=True, check=False,
                            env=member.env,
                            cwd=tmp_path, timeout=30)
    assert result.returncode == 2
    assert "without an API token" in result.stderr


def test_a_replica_without_a_token_makes_one_that_only_its_users_cli_finds(
        tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    config = write_config(tmp_path / "jobs.toml",
                          ledger_job("hello", "* * * * * *", ledger, then="echo hi there"))
    member = Replica(tmp_path, "r1", data_dir=tmp_path / "data", config=config, token=None)
    with replicas(member):
        wait_until(lambda: read_ledger(ledger), 10, "a run")
        token_file = tmp_path / "data" / "token"
        token = token_file.read_text().strip()
        assert token and token_file.stat().st_mode & 0o077 == 0
        assert token not in member.log()
        launch_id = read_ledger(ledger)[0]
        assert httpx.get(f"{member.url}/runs/{launch_id}", params={"output": "true"},
                         timeout=5).status_code == 401
        env = {**member.env, "PATH": "/usr/bin:/bin"}

        def show(**extra: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "distcron", "runs", "show", launch_id, "--server",
                 member.url], env={**env, **extra}, capture_output=True, text=True,
                timeout=30, check=False)
        shown = show()
        assert shown.returncode == 0 and "hi there" in shown.stdout, shown.stderr
        elsewhere = show(XDG_STATE_HOME=str(tmp_path / "someone-else"))
        assert "hi there" not in elsewhere.stdout


def test_a_manual_trigger_runs_the_job_under_its_own_launch_id(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    config = write_config(tmp_path / "jobs.toml", ledger_job("yearly", "0 0 1 1 *", ledger))
    with replicas(Replica(tmp_path, "r1", data_dir=tmp_path / "data", config=config)) as (r1,):
        wait_until(r1.is_leader, 10, "leadership")
        response = httpx.post(f"{r1.url}/jobs/yearly/trigger",
                              headers={"Authorization": f"Bearer {TOKEN}"})
        assert response.status_code == 202
        launch_id = response.json()["launch_id"]
        assert launch_id.startswith("yearly@manual-")
        wait_until(lambda: read_ledger(ledger) == [launch_id], 10, "the manual run")
        run = wait_until(lambda: (r := r1.run(launch_id))["state"] == "succeeded" and r, 10,
                         "the manual run's record")
        assert run["slot"] is None


def test_the_metrics_name_the_replica_and_its_version(tmp_path: Path) -> None:
    with replicas(Replica(tmp_path, "r1", data_dir=tmp_path / "data")) as (r1,):
        text = httpx.get(f"{r1.url}/metrics", timeout=5).text
        assert f'distcron_replica_info{{replica="r1",version="{__version__}"}} 1.0' in text


def test_sigterm_stops_a_replica_cleanly(tmp_path: Path) -> None:
    member = Replica(tmp_path, "r1", data_dir=tmp_path / "data")
    with replicas(member):
        member.signal(signal.SIGTERM)
        assert member.proc is not None
        assert member.proc.wait(15) == 0


def test_an_http_job_sends_each_launch_once_with_its_idempotency_key(tmp_path: Path) -> None:
    received: list[dict[str, str]] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            received.append(dict(self.headers))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        config = write_config(tmp_path / "jobs.toml", "\n".join([
            "[[job]]", 'name = "hook"', 'schedule = "* * * * * *"', 'executor = "http"',
            f'url = "http://127.0.0.1:{server.server_address[1]}/run"',
            'headers = { Authorization = "Bearer hook-secret" }', 'body = "{}"']))
        member = Replica(tmp_path, "r1", data_dir=tmp_path / "data", config=config)
        with replicas(member):
            wait_until(lambda: len(received) >= 3, 20, "three requests")
            keys = [h["Idempotency-Key"] for h in received]
            assert len(set(keys)) == len(keys)
            assert all(h["Authorization"] == "Bearer hook-secret" for h in received)
            record = wait_until(lambda: (r := member.run(keys[0]))["state"] == "succeeded"
                                and r, 10, "the first request's record")
            assert record["executor"] == "http"
            assert keys[0] == received[0]["Distcron-Launch-Id"]
        assert "hook-secret" not in member.log()
    finally:
        server.shutdown()


def test_loading_many_jobs_does_not_starve_the_leader_s_lease(tmp_path: Path) -> None:
    # Loading 30,000 jobs takes seconds, longer than this 1 s lease: the load must
    # let the keepalive run, or the leader loses its lease and reloads forever.
    config = write_config(tmp_path / "jobs.toml", *(
        f'[[job]]\nname = "job-{n:05d}"\nschedule = "H H H H *"\ncommand = "true"\n'
        for n in range(30_000)))
    member = Replica(tmp_path, "r1", data_dir=tmp_path / "data", config=config, lease_ttl=1.0,
                     answers_within=90)
    with replicas(member):
        wait_until(lambda: "event=term_started" in member.log(), 60, "the jobs to load")
        fence = member.get("/status")["fence"]
        holds_for(lambda: member.get("/status")["fence"] == fence, 3, "one leadership term")
        assert member.log().count("event=became_leader") == 1, member.log()[-3000:]
