"""Catch-up as documented, on a real ``distcron serve`` stopped and started again:
``all`` runs every slot that fell due while it was down, once each, whatever the
overlap policy (one after another in slot order under ``forbid`` and ``queue``);
``last`` runs only the latest."""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.serve_harness import Replica, ledger_job, read_ledger, replicas
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

POLICIES = ("forbid", "queue", "allow", "replace")
DOWN = 9.0  # seconds; a job every 2 s misses four or five slots


def slot_of(launch_id: str) -> datetime:
    return datetime.fromisoformat(launch_id.split("@", 1)[1].replace("Z", "+00:00"))


def test_catch_up_all_runs_every_missed_slot_once_in_order_and_last_only_the_latest(
        tmp_path: Path) -> None:
    ledgers = {policy: tmp_path / f"{policy}.ledger" for policy in POLICIES}
    last_ledger = tmp_path / "last.ledger"
    jobs = [ledger_job(f"all-{policy}", "*/2 * * * * *", ledgers[policy], then="sleep 0.3",
                       catchup="all", concurrency=policy) for policy in POLICIES]
    jobs.append(ledger_job("last", "*/2 * * * * *", last_ledger, then="sleep 0.3"))
    config = tmp_path / "jobs.toml"
    config.write_text("\n".join(jobs))
    member = Replica(tmp_path, "r1", data_dir=tmp_path / "data", config=config)
    with replicas(member):
        wait_until(lambda: all(read_ledger(p) for p in ledgers.values()), 20, "first runs")
    stopped = datetime.now(UTC)
    time.sleep(DOWN)  # the downtime itself is what is tested
    restarted = datetime.now(UTC)
    with replicas(Replica(tmp_path, "r1", data_dir=tmp_path / "data", config=config)) as (again,):
        def caught_up() -> bool:
            return all(any(slot_of(i) > restarted for i in read_ledger(p))
                       for p in (*ledgers.values(), last_ledger))
        wait_until(caught_up, 40, "every job to run again after the restart")
        launched = {policy: [r["launch_id"] for r in again.runs(job=f"all-{policy}")
                             if r["state"] not in ("missed", "skipped")]
                    for policy in POLICIES}
    expected = _slots(stopped, restarted)
    for policy, ledger in ledgers.items():
        ran = read_ledger(ledger)
        assert not [i for i, n in Counter(ran).items() if n > 1], policy
        missed = [slot_of(i) for i in ran if stopped < slot_of(i) <= restarted]
        if policy == "replace":
            # The next slot may stop the last caught-up run before its shell
            # wrote a line; its record still shows it launched (then stopped).
            assert set(missed) <= set(expected), policy
            missed = [slot_of(i) for i in launched[policy] if stopped < slot_of(i) <= restarted]
        assert sorted(missed) == expected, policy
        if policy in ("forbid", "queue"):  # one after another; the others overlap
            in_order = [slot_of(i) for i in ran]
            assert in_order == sorted(in_order), policy
    # "last": of the slots due when the leader started again, only the latest
    # ran, and it may have fallen due after the restart itself.
    first_after = min(slot_of(i) for i in read_ledger(last_ledger) if stopped < slot_of(i))
    assert first_after >= _slots(stopped, restarted)[-1]


def _slots(after: datetime, until: datetime) -> list[datetime]:
    first = after.replace(microsecond=0) + timedelta(seconds=1)
    return [first + timedelta(seconds=n) for n in range(int((until - first).total_seconds()) + 1)
            if (first + timedelta(seconds=n)).second % 2 == 0
            and after < first + timedelta(seconds=n) <= until]
