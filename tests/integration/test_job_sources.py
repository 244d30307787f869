"""No configuration lost: a real ``distcron serve --config FILE``, jobs applied
through the API, then SIGHUP and a restart. The file reconciles only its own
jobs; the API's survive both, and the API may not edit the file's."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.serve_harness import TOKEN, Replica, ledger_job, replicas
from tests.waiting import wait_until

pytestmark = pytest.mark.slow


def _sources(replica: Replica) -> dict[str, str | None]:
    return {job["name"]: job["source"] for job in replica.get("/jobs")}


def _cli(replica: Replica, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"DISTCRON_SERVER": replica.url, "DISTCRON_TOKEN": TOKEN, "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "distcron", "jobs", *args],
                          capture_output=True, text=True, check=False, env=env, timeout=30)


def test_jobs_applied_through_the_api_survive_a_reload_and_a_restart(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    config = tmp_path / "config.toml"
    config.write_text(ledger_job("nightly", "0 0 1 1 *", ledger)
                      + ledger_job("weekly", "0 0 * * 0", ledger))
    other = tmp_path / "other.toml"
    other.write_text(ledger_job("adhoc", "0 12 1 1 *", ledger)
                     + ledger_job("report", "0 6 * * *", ledger))
    member = Replica(tmp_path, "r1", data_dir=tmp_path / "data", config=config)
    with replicas(member) as (r1,):
        applied = _cli(r1, "apply", str(other))
        assert applied.returncode == 0, applied.stderr
        assert _sources(r1) == {"nightly": str(config), "weekly": str(config),
                                "adhoc": "api", "report": "api"}
        # The file loses a job and changes another; the API's stay as they are.
        config.write_text(ledger_job("nightly", "0 1 1 1 *", ledger))
        r1.signal(signal.SIGHUP)
        wait_until(lambda: set(_sources(r1)) == {"nightly", "adhoc", "report"}, 10,
                   "the reload to remove the file's weekly job")
        assert r1.get("/jobs/nightly")["schedule"] == "0 1 1 1 *"
        listed = _cli(r1, "list")
        assert listed.returncode == 0, listed.stderr
        assert "SOURCE" in listed.stdout and str(config) in listed.stdout
        r1.stop()
    with replicas(Replica(tmp_path, "r1", data_dir=tmp_path / "data", config=config)) as (r1,):
        assert _sources(r1) == {"nightly": str(config), "adhoc": "api", "report": "api"}


def test_an_api_edit_of_a_file_s_job_is_refused_naming_the_file(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    config = tmp_path / "config.toml"
    config.write_text(ledger_job("nightly", "0 0 1 1 *", ledger))
    with replicas(Replica(tmp_path, "r1", data_dir=tmp_path / "data", config=config)) as (r1,):
        answer = httpx.put(f"{r1.url}/jobs/nightly", json={"schedule": "@daily",
                                                          "command": "true"},
                           headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
        assert answer.status_code == 409
        assert str(config) in answer.json()["detail"]
        removed = _cli(r1, "remove", "nightly")
        assert removed.returncode != 0 and str(config) in removed.stderr
        edit = tmp_path / "edit.toml"
        edit.write_text(ledger_job("nightly", "@daily", ledger))
        refused = _cli(r1, "apply", str(edit))
        assert refused.returncode != 0 and str(config) in refused.stderr
        assert "--take-over" in refused.stderr
        taken = _cli(r1, "apply", "--take-over", str(edit))
        assert taken.returncode == 0, taken.stderr
        assert "nightly (schedule, source)" in taken.stdout
        assert _sources(r1) == {"nightly": "api"}
        # The file no longer owns it: a reload leaves the API's version.
        r1.signal(signal.SIGHUP)
        wait_until(lambda: "event=job_kept" in r1.log(), 10, "the reload to keep the job")
        assert r1.get("/jobs/nightly")["schedule"] == "@daily"


def test_a_heavy_apply_is_answered_while_the_leader_keeps_its_lease(tmp_path: Path) -> None:
    # Parsing and validating 10,000 jobs takes longer than this lease: it must
    # run off the event loop, which renews the lease.
    member = Replica(tmp_path, "r1", data_dir=tmp_path / "data", lease_ttl=1.0)
    toml = "".join(f'[[job]]\nname = "j{n}"\nschedule = "H H * * *"\ncommand = "true"\n'
                   f'env = {{ A = "{n}" }}\n' for n in range(10_000))
    deep = "x = " + "[" * 500 + "]" * 500 + "\n"
    with replicas(member) as (r1,):
        wait_until(r1.is_leader, 20, "r1 to lead")
        fence = r1.get("/status")["fence"]
        headers = {"Authorization": f"Bearer {TOKEN}"}
        for body, code in (({"toml": toml, "dry_run": True}, 200), ({"toml": deep}, 422),
                           ({"toml": toml + toml}, 422)):
            answer = httpx.post(f"{r1.url}/jobs/apply", json=body, headers=headers, timeout=60)
            assert answer.status_code == code, answer.text[:300]
        assert r1.get("/status")["fence"] == fence
        assert r1.log().count("event=became_leader") == 1, r1.log()[-3000:]
