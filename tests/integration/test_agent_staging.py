"""Staging through worker agents, with real replicas and a real worker on one
SQLite file (the first test also on a real 3-member etcd): a launch due within
the lead is assigned ahead and held by its worker until a release mark names it.

- A leader killed after staging and before the release started nothing; the
  next leader releases the slot, and it runs once, at its slot.
- A leader paused across the release instant releases nothing; the replica
  that took over does, once.
- A job paused after staging does not run: its slot is recorded skipped.
- A worker killed while it holds a staged launch: at the slot the launch goes
  to another worker, and runs once.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.integration.test_workers_end_to_end import Worker, registered, workers
from tests.serve_harness import Replica, holds_for, ledger_job, read_ledger, replicas
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

LEAD = 4.0  # seconds: staged this long before the slot
AHEAD = 9.0  # seconds from the start of a test to its slot


def _slot() -> datetime:
    return (datetime.now(UTC) + timedelta(seconds=AHEAD)).replace(microsecond=0)


def _job(tmp_path: Path, slot: datetime) -> tuple[Path, Path, str]:
    ledger = tmp_path / "ledger"
    config = tmp_path / "jobs.toml"
    config.write_text(ledger_job("herd", f"{slot.second} {slot.minute} {slot.hour} * * *",
                                 ledger, executor="agent"))
    return config, ledger, f"herd@{slot.strftime('%Y-%m-%dT%H:%M:%SZ')}"


def _replica(tmp_path: Path, name: str, config: Path, store: str | None = None) -> Replica:
    member = Replica(tmp_path, name, data_dir=tmp_path / "data", config=config, lease_ttl=1.0,
                     extra=("--store", store) if store else ())
    member.env["DISTCRON_STAGE_LEAD"] = str(LEAD)
    return member


def _staged(worker: Worker, launch_id: str) -> bool:
    return f"event=run_staged launch_id={launch_id}" in worker.log_path.read_text()


def _ran_once_at_its_slot(member: Replica, ledger: Path, launch_id: str,
                          slot: datetime, worker: str = "w1") -> None:
    record = wait_until(lambda: (r := member.run(launch_id))["state"] == "succeeded" and r,
                        20, f"{launch_id} to succeed")
    assert read_ledger(ledger) == [launch_id]
    assert record["worker"] == worker
    assert datetime.fromisoformat(record["started_at"]) >= slot


@contextlib.contextmanager
def _staged_by_one_of_two(tmp_path: Path, store: str | None = None
                          ) -> Iterator[tuple[Replica, Replica, Path, str, datetime]]:
    """Two replicas and a worker on ``store`` (default: a SQLite file), once the
    leader has staged the slot on the worker: the leader, the follower, the
    ledger, the launch id, the slot."""
    slot = _slot()
    config, ledger, launch_id = _job(tmp_path, slot)
    store = store or f"sqlite:///{tmp_path / 'data' / 'state.db'}"
    first, second = (_replica(tmp_path, "a", config, store),
                     _replica(tmp_path, "b", config, store))
    with replicas(first, second), workers(Worker(tmp_path, "w1", store)) as (worker,):
        wait_until(lambda: registered(first, "w1"), 10, "the worker to register")
        leader = first if first.is_leader() else second
        follower = second if leader is first else first
        wait_until(lambda: _staged(worker, launch_id), AHEAD, "the launch staged")
        assert datetime.now(UTC) < slot, "staged too late for the test to mean anything"
        yield leader, follower, ledger, launch_id, slot


def test_a_leader_killed_after_staging_leaves_the_slot_to_the_next_which_runs_it_once(
        tmp_path: Path, store_url: str) -> None:
    with _staged_by_one_of_two(tmp_path, store_url) as (leader, follower, ledger, launch_id,
                                                        slot):
        leader.kill()
        holds_for(lambda: not read_ledger(ledger),
                  max(0.0, (slot - datetime.now(UTC)).total_seconds() - 0.2),
                  "nothing runs before its slot")
        wait_until(follower.is_leader, 10, "the follower to take over")
        _ran_once_at_its_slot(follower, ledger, launch_id, slot)
        holds_for(lambda: read_ledger(ledger) == [launch_id], 1.5, "it ran once")


def test_a_leader_paused_across_the_release_releases_nothing_and_the_slot_runs_once(
        tmp_path: Path) -> None:
    with _staged_by_one_of_two(tmp_path) as (leader, follower, ledger, launch_id, slot):
        leader.signal(signal.SIGSTOP)
        try:
            wait_until(follower.is_leader, 15, "the follower to take over")
            _ran_once_at_its_slot(follower, ledger, launch_id, slot)
        finally:
            leader.signal(signal.SIGCONT)
        # The paused leader, back, writes no mark of its own: still one run.
        wait_until(lambda: "event=leadership_ended" in leader.log(), 15,
                   "the paused leader to learn it was deposed")
        holds_for(lambda: read_ledger(ledger) == [launch_id], 1.5, "it ran once")


def test_a_job_paused_after_its_launch_was_staged_does_not_run(tmp_path: Path) -> None:
    slot = _slot()
    config, ledger, launch_id = _job(tmp_path, slot)
    store = f"sqlite:///{tmp_path / 'data' / 'state.db'}"
    with replicas(_replica(tmp_path, "a", config)) as (member,), \
            workers(Worker(tmp_path, "w1", store)) as (worker,):
        wait_until(lambda: registered(member, "w1"), 10, "the worker to register")
        wait_until(lambda: _staged(worker, launch_id), AHEAD, "the launch staged")
        member.post("/jobs/herd/pause")
        record = wait_until(lambda: (r := member.run(launch_id))["state"] == "skipped" and r,
                            10, "the staged slot recorded skipped")
        assert record["cause"] == "paused"
        wait_until(lambda: f"event=unstaged launch_id={launch_id}" in
                   worker.log_path.read_text(), 10, "the worker to let it go")
        holds_for(lambda: not read_ledger(ledger),
                  max(0.5, (slot - datetime.now(UTC)).total_seconds() + 1.0),
                  "a paused job's staged slot never runs")


def test_a_worker_killed_holding_a_staged_launch_leaves_it_to_another_at_its_slot(
        tmp_path: Path) -> None:
    slot = _slot()
    config, ledger, launch_id = _job(tmp_path, slot)
    store = f"sqlite:///{tmp_path / 'data' / 'state.db'}"
    with replicas(_replica(tmp_path, "a", config)) as (member,), \
            workers(Worker(tmp_path, "w1", store), Worker(tmp_path, "w2", store)) as pair:
        wait_until(lambda: registered(member, "w1", "w2"), 10, "the workers to register")
        holder = wait_until(lambda: next((w for w in pair if _staged(w, launch_id)), None),
                            AHEAD, "the launch staged on a worker")
        holder.kill()
        _ran_once_at_its_slot(member, ledger, launch_id, slot,
                              next(w.worker_id for w in pair if w is not holder))
        holds_for(lambda: read_ledger(ledger) == [launch_id], 1.5, "it ran once")
