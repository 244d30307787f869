"""The SQLite file under real ``distcron serve`` processes: removed and made
again, or an older copy put back. Jobs write their launch id, store id and
fence to a ledger; the tests count what really ran."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from tests.serve_harness import Replica, read_ledger, replicas
from tests.waiting import wait_until

pytestmark = pytest.mark.slow


def tick_job(ledger: Path, **keys: str) -> str:
    command = f'echo "$DISTCRON_LAUNCH_ID $DISTCRON_STORE_ID $DISTCRON_FENCE" >> {ledger}'
    lines = ["[[job]]", 'name = "tick"', 'schedule = "* * * * * *"',
             f"command = {json.dumps(command)}", 'concurrency = "allow"']
    lines += [f"{key} = {json.dumps(value)}" for key, value in keys.items()]
    return "\n".join(lines) + "\n"


def launches(ledger: Path) -> list[tuple[str, str, str]]:
    return [(launch, store, fence) for launch, store, fence in
            (line.split(" ") for line in read_ledger(ledger))]


def doubled(ledger: Path) -> list[str]:
    counts = Counter(launch for launch, _, _ in launches(ledger))
    return [launch for launch, n in counts.items() if n > 1]


def remove_store(data: Path) -> None:
    for path in data.glob("state.db*"):
        path.unlink()


def store_problem(replica: Replica) -> str | None:
    health = replica.get("/healthz")
    return None if health["leader"] else health["store_problem"]


def test_a_file_removed_and_made_again_under_two_replicas_launches_no_slot_twice(
        tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    config = tmp_path / "jobs.toml"
    config.write_text(tick_job(ledger))
    data = tmp_path / "data"
    a = Replica(tmp_path, "a", data_dir=data, config=config)
    b = Replica(tmp_path, "b", data_dir=data, config=config)
    with replicas(a, b):
        wait_until(lambda: any(r.is_leader() for r in (a, b)), 10, "a leader")
        wait_until(lambda: len(read_ledger(ledger)) >= 3, 15, "runs on the first file")
        remove_store(data)
        # Both notice without a write of their own: the standby has none to make.
        for replica in (a, b):
            problem = wait_until(lambda r=replica: store_problem(r), 5,
                                 f"{replica.name} to stop using the removed file")
            assert problem is not None and "removed" in problem
        before = launches(ledger)
        # A third replica makes a fresh store at the path and leads it.
        c = Replica(tmp_path, "c", data_dir=data, config=config)
        with replicas(c):
            wait_until(c.is_leader, 15, "the new replica to lead the new file")
            wait_until(lambda: len(read_ledger(ledger)) >= len(before) + 4, 15,
                       "runs on the new file")
            assert not a.is_leader() and not b.is_leader()
        after = launches(ledger)[len(before):]
    assert not doubled(ledger), "a slot was launched twice"
    # A launch the old leader released just before it noticed may land in the
    # ledger after `before` was read: tell the files apart by the ids, not by where.
    stores = [store for _, store, _ in launches(ledger)]
    old_id, new_id = stores[0], stores[-1]
    assert old_id != new_id and set(stores) == {old_id, new_id}, \
        "launches of the two files must be told apart by their store id"
    assert all(store == new_id for _, store, _ in after[-3:]), after
    assert "event=store_unusable" in a.log() and "event=store_unusable" in b.log()


def consistent_copy(path: Path, to: Path) -> None:
    """What an operator's backup of the live file is (SQLite's backup API)."""
    source, target = sqlite3.connect(path), sqlite3.connect(to)
    try:
        source.backup(target)
    finally:
        source.close()
        target.close()


def test_an_older_copy_put_back_does_not_run_again_the_slots_run_since(
        tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    config = tmp_path / "jobs.toml"
    # Catch-up "all": without the restore being noticed, every slot since the
    # copy would be run again at the restart.
    config.write_text(tick_job(ledger, catchup="all", starting_deadline="1h"))
    data = tmp_path / "data"
    copy = tmp_path / "copy.db"
    first = Replica(tmp_path, "r1", data_dir=data, config=config)
    with replicas(first):
        wait_until(lambda: len(read_ledger(ledger)) >= 2, 15, "runs before the copy")
        consistent_copy(data / "state.db", copy)
        copied = len(read_ledger(ledger))
        wait_until(lambda: len(read_ledger(ledger)) >= copied + 4, 15, "runs after the copy")
        remove_store(data)
        shutil.copy(copy, data / "state.db")
        problem = wait_until(lambda: store_problem(first), 5, "the replica to stop leading")
        assert "replaced" in problem
    ran_before_restart = len(read_ledger(ledger))
    # Another data directory: its executor has not seen the launches since the
    # copy, so only the restore marker keeps them from running again.
    again = Replica(tmp_path, "r2", data_dir=tmp_path / "data2", config=config,
                    extra=("--store", f"sqlite:///{data / 'state.db'}"))
    with replicas(again):
        wait_until(lambda: len(read_ledger(ledger)) >= ran_before_restart + 3, 15,
                   "runs after the restart")
        missed = [r for r in again.runs(job="tick") if r.get("cause") == "restored"]
    assert not doubled(ledger), "a slot run after the copy was run again"
    assert missed and all(r["state"] == "missed" for r in missed), \
        "the slots since the copy are recorded missed"
    assert "event=store_restored_from_copy" in again.log()


def test_a_second_replica_with_another_data_dir_on_the_same_store_is_refused(
        tmp_path: Path) -> None:
    data = tmp_path / "data"
    store = f"sqlite:///{data / 'state.db'}"
    first = Replica(tmp_path, "a", data_dir=data)
    with replicas(first):
        wait_until(first.is_leader, 10, "the first replica to lead")
        other = Replica(tmp_path, "b", data_dir=tmp_path / "elsewhere", extra=("--store", store))
        result = subprocess.run(other.args, env=other.env, cwd=tmp_path, capture_output=True,
                                text=True, timeout=30, check=False)
        assert result.returncode == 1, result.stderr
        assert "--data-dir" in result.stderr and str(data / "runs") in result.stderr
        assert str(tmp_path / "elsewhere" / "runs") in result.stderr
        assert first.is_leader()
        # The same data directory is how two replicas share one machine.
        same = Replica(tmp_path, "c", data_dir=data)
        with replicas(same):
            assert same.get("/healthz")["ok"]
