"""Notifications end to end: real replicas, a real webhook receiver and a real
SMTP server on loopback. Every failed launch of a job that asks is notified
exactly once per state, also when the leader is killed between the failure and
the delivery and when the receiver is down for a while; a job that does not ask
sends nothing."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.notify.receivers import smtp_receiver, webhook_receiver
from tests.serve_harness import TOKEN, Replica, ledger_job, read_ledger, replicas
from tests.waiting import wait_until

pytestmark = pytest.mark.slow


def jobs_file(path: Path, ledger: Path, quiet: Path) -> Path:
    path.write_text(
        ledger_job("flaky", "*/2 * * * * *", ledger, then="echo oops; exit 3",
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
    config = jobs_file(tmp_path / "jobs.toml", ledger, quiet)
    with webhook_receiver(refuse=10_000) as hook:
        first = Replica(tmp_path, "r1", data_dir=tmp_path / "data", config=config)
        second = Replica(tmp_path, "r2", data_dir=tmp_path / "data", config=config)
        with replicas(first, second):
            leader = first if first.is_leader() else second
            follower = second if leader is first else first
            put_notifier(leader, "ops", hook.url)
            known = {r["launch_id"] for r in leader.runs(job="flaky")}  # before the notifier
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
    config = jobs_file(tmp_path / "jobs.toml", ledger, quiet)
    with smtp_receiver() as mail:
        member = Replica(tmp_path, "r1", data_dir=tmp_path / "data", config=config,
                         extra=("--smtp", f"{mail.host}:{mail.port}"))
        with replicas(member):
            put_notifier(member, "ops", "mailto:ops@example.com")
            wait_until(lambda: len(mail.messages) >= 2, 20, "two mails")
        subjects = Counter(str(message["Subject"]) for _, message in mail.messages)
        assert all(n == 1 for n in subjects.values())
        assert all(s.startswith("[distcron] flaky failed: flaky@") for s in subjects)
