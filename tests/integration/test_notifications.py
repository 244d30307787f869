"""Notifications end to end: real replicas, a real webhook receiver and a real
SMTP server on loopback. Every failed launch of a job that asks is notified
exactly once per state, also when the leader is killed between the failure and
the delivery and when the receiver is down for a while; a job that does not ask
sends nothing."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.notify.receivers import smtp_receiver, webhook_receiver
from tests.serve_harness import TOKEN, Replica, ledger_job, read_ledger, replicas
from tests.waiting import wait_until

pytestmark = pytest.mark.slow


def jobs_file(path: Path, ledger: Path, quiet: Path, notifier_url: str) -> Path:
    """The jobs, and the notifier "ops" declared beside them ([[notifier]])."""
    path.write_text(
        f'[[notifier]]\nname = "ops"\nurl = {json.dumps(notifier_url)}\n\n'
        + ledger_job("flaky", "*/2 * * * * *", ledger, then="echo oops; exit 3",
                   notify=["ops"], notify_output=True)
        + ledger_job("quiet", "*/2 * * * * *", quiet, then="exit 3"))
    return path


def put_notifier(replica: Replica, name: str, url: str) -> None:
    answer = httpx.put(f"{replica.url}/notifiers/{name}", json={"url": url}, timeout=5,
                       headers={"Authorization": f"Bearer {TOKEN}"})
    answer.raise_for_status()


def test_each_failure_is_notified_once_across_a_killed_leader_and_a_receiver_down(
        tmp_path: Path) -> None:
    ledger, quiet = tmp_path / "flaky.ledger", tmp_path / "quiet.ledger"
    with webhook_receiver(refuse=10_000) as hook:
        config = jobs_file(tmp_path / "jobs.toml", ledger, quiet, hook.url)
        first = Replica(tmp_path, "r1", data_dir=tmp_path / "data", config=config)
        second = Replica(tmp_path, "r2", data_dir=tmp_path / "data", config=config)
        with replicas(first, second):
            leader = first if first.is_leader() else second
            follower = second if leader is first else first
            known = {r["launch_id"] for r in leader.runs(job="flaky")}  # checked from here on
            # Failures pile up while the receiver refuses; then the leader dies.
            wait_until(lambda: len(read_ledger(ledger)) >= len(known) + 3, 15,
                       "three failures")
            leader.kill()
            wait_until(follower.is_leader, 15, "the follower to take over")
            with hook.lock:
                hook.refuse = 0  # the receiver comes back
            failed = wait_until(lambda: [r["launch_id"] for r in follower.runs(job="flaky")
                                         if r["state"] == "failed"
                                         and r["launch_id"] not in known], 10, "failures")
            wait_until(lambda: {b["launch_id"] for b in hook.bodies()} >= set(failed[:5]),
                       30, "every failure to be notified")
        keys = Counter(r.headers["Idempotency-Key"] for r in hook.received)
        assert keys, "nothing was delivered"
        assert all(n == 1 for n in keys.values()), keys  # once each, across the takeover
        assert all(key.endswith(":failed") for key in keys)
        bodies = hook.bodies()
        assert {b["job"] for b in bodies} == {"flaky"}  # "quiet" does not ask
        assert all(b["exit_code"] == 3 and "oops" in b["output_tail"] for b in bodies)
        assert read_ledger(quiet)


def test_a_mail_notifier_gets_one_mail_per_failure(tmp_path: Path) -> None:
    ledger, quiet = tmp_path / "flaky.ledger", tmp_path / "quiet.ledger"
    config = jobs_file(tmp_path / "jobs.toml", ledger, quiet, "mailto:ops@example.com")
    with smtp_receiver() as mail:
        member = Replica(tmp_path, "r1", data_dir=tmp_path / "data", config=config,
                         extra=("--smtp", f"{mail.host}:{mail.port}"))
        with replicas(member):
            # The config file's notifier is the file's: the API changes it only taking over.
            refused = httpx.put(f"{member.url}/notifiers/ops", timeout=5,
                                json={"url": "mailto:other@example.com"},
                                headers={"Authorization": f"Bearer {TOKEN}"})
            assert refused.status_code == 409 and "jobs.toml" in refused.text
            wait_until(lambda: len(mail.messages) >= 2, 20, "two mails")
        subjects = Counter(str(message["Subject"]) for _, message in mail.messages)
        assert all(n == 1 for n in subjects.values())
        assert all(s.startswith("[distcron] flaky failed: flaky@") for s in subjects)


def test_a_notifier_put_through_the_api_serves_a_job_of_the_file_that_names_it_later(
        tmp_path: Path) -> None:
    ledger, quiet = tmp_path / "flaky.ledger", tmp_path / "quiet.ledger"
    with webhook_receiver() as hook:
        config = tmp_path / "jobs.toml"
        config.write_text(ledger_job("quiet", "*/2 * * * * *", quiet, then="exit 3"))
        member = Replica(tmp_path, "r1", data_dir=tmp_path / "data", config=config)
        with replicas(member):
            put_notifier(member, "pager", hook.url)
            # The file now names "pager": in the store, so the reload applies it.
            config.write_text(ledger_job("flaky", "*/2 * * * * *", ledger, then="exit 3",
                                         notify=["pager"]))
            member.signal(signal.SIGHUP)
            wait_until(lambda: {b["job"] for b in hook.bodies()} == {"flaky"}, 20,
                       "a failure of the reloaded job to be notified")


def test_serve_refuses_a_config_whose_job_names_a_notifier_that_is_nowhere(
        tmp_path: Path) -> None:
    config = tmp_path / "jobs.toml"
    config.write_text('[[notifier]]\nname = "ops"\nurl = "https://hooks.example/x"\n\n'
                      + ledger_job("flaky", "0 0 1 1 *", tmp_path / "ledger",
                                   notify=["ops", "pager"]))
    done = subprocess.run([sys.executable, "-m", "distcron", "serve", "--config", str(config),
                           "--data-dir", str(tmp_path / "data"), "--listen", "127.0.0.1:0"],
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode != 0
    assert "job 'flaky', field 'notify': names notifier 'pager'" in done.stderr + done.stdout
