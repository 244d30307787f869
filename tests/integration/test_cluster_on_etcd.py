"""Three replicas on a real 3-member etcd cluster, killed and paused with real
signals. Each test gets a fresh cluster (fresh data directories, a new cluster
token). Jobs append "<launch id> <fence>" to a ledger outside distcron; the
tests count what really ran."""

from __future__ import annotations

import contextlib
import itertools
import signal
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.etcd_cluster import EtcdCluster, etcd_available
from tests.serve_harness import Replica, read_ledger, replicas
from tests.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.cluster,
              pytest.mark.skipif(not etcd_available(), reason="no etcd binary")]

TTL = 2.0


@pytest.fixture
def cluster() -> Iterator[EtcdCluster]:
    with tempfile.TemporaryDirectory(prefix="distcron-etcd-", dir="/dev/shm") as tmp:
        fresh = EtcdCluster(Path(tmp))
        fresh.start()
        try:
            yield fresh
        finally:
            fresh.stop()


def ticking_config(path: Path, ledger: Path) -> Path:
    path.write_text("\n".join([
        "[[job]]", 'name = "tick"', 'schedule = "* * * * * *"', 'concurrency = "allow"',
        f"command = 'echo \"$DISTCRON_LAUNCH_ID $DISTCRON_FENCE $(date +%s.%N)\" >> {ledger}'"]))
    return path


def three_replicas(tmp_path: Path, cluster: EtcdCluster, config: Path,
                   prefix: str = "cluster") -> list[Replica]:
    # Each replica has its own data directory, as on three machines.
    return [Replica(tmp_path, f"r{n}", data_dir=tmp_path / f"data-{n}", config=config,
                    lease_ttl=TTL, extra=("--store", cluster.url(prefix)))
            for n in range(3)]


def leader_of(members: list[Replica]) -> Replica:
    return wait_until(lambda: next((m for m in members if m.is_leader()), None), 20,
                      "a leader")


def launches(ledger: Path) -> list[tuple[str, int, float]]:
    rows = []
    for line in read_ledger(ledger):
        launch_id, fence, at = line.split()
        rows.append((launch_id, int(fence), float(at)))
    return rows


def slot_of(launch_id: str) -> datetime:
    return datetime.fromisoformat(launch_id.split("@", 1)[1].replace("Z", "+00:00"))


def assert_each_slot_launched_once(ledger: Path) -> None:
    ids = [launch_id for launch_id, _, _ in launches(ledger)]
    doubled = [i for i, n in Counter(ids).items() if n > 1]
    assert not doubled, f"launched twice: {doubled}"
    slots = sorted(slot_of(i) for i in ids)
    gaps = [b - a for a, b in itertools.pairwise(slots)]
    assert all(gap == timedelta(seconds=1) for gap in gaps), "a slot was never launched"


def test_the_leader_killed_again_and_again_never_doubles_or_loses_a_slot(
        tmp_path: Path, cluster: EtcdCluster) -> None:
    ledger = tmp_path / "ledger"
    members = three_replicas(tmp_path, cluster, ticking_config(tmp_path / "jobs.toml", ledger))
    with replicas(*members), contextlib.ExitStack() as restarted:
        for round_ in range(3):
            leader = leader_of(members)
            before = len(read_ledger(ledger))
            wait_until(lambda b=before: len(read_ledger(ledger)) >= b + 2, 20,
                       "launches under this leader")
            leader.kill()
            after = len(read_ledger(ledger))
            others = [m for m in members if m is not leader]
            wait_until(lambda o=others: any(m.is_leader() for m in o), 20, "a new leader")
            wait_until(lambda a=after: len(read_ledger(ledger)) >= a + 2, 20,
                       "launches under the new leader")
            index = members.index(leader)
            members[index] = restarted.enter_context(replicas(Replica(
                tmp_path, f"r{index}-{round_}", data_dir=tmp_path / f"data-{index}",
                config=tmp_path / "jobs.toml", lease_ttl=TTL,
                extra=("--store", cluster.url("cluster")))))[0]
        assert_each_slot_launched_once(ledger)
        fences = {fence for _, fence, _ in launches(ledger)}
        assert len(fences) >= 4  # every leader launched under its own fence


def test_a_paused_leader_launches_nothing_after_its_lease_and_rejoins_as_a_follower(
        tmp_path: Path, cluster: EtcdCluster) -> None:
    ledger = tmp_path / "ledger"
    members = three_replicas(tmp_path, cluster, ticking_config(tmp_path / "jobs.toml", ledger))
    with replicas(*members):
        leader = leader_of(members)
        wait_until(lambda: len(read_ledger(ledger)) >= 2, 20, "launches")
        old_fence = leader.get("/status")["fence"]
        leader.signal(signal.SIGSTOP)
        paused_at = time.time()
        others = [m for m in members if m is not leader]
        wait_until(lambda: any(m.is_leader() for m in others), 20, "a new leader")
        wait_until(lambda: any(f != old_fence for _, f, _ in launches(ledger)), 20,
                   "launches under the new fence")
        leader.signal(signal.SIGCONT)
        wait_until(lambda: not leader.is_leader(), 20, "the old leader to step down")
        mark = len(read_ledger(ledger))
        wait_until(lambda: len(read_ledger(ledger)) >= mark + 3, 20, "more launches")
        late = [(i, at) for i, fence, at in launches(ledger)
                if fence == old_fence and at > paused_at + TTL]
        assert not late, f"the deposed leader launched after its lease: {late}"
        assert_each_slot_launched_once(ledger)
        assert leader.get("/status")["leader"] != leader.name


def test_killing_the_etcd_raft_leader_while_launches_commit_doubles_nothing(
        tmp_path: Path, cluster: EtcdCluster) -> None:
    ledger = tmp_path / "ledger"
    members = three_replicas(tmp_path, cluster, ticking_config(tmp_path / "jobs.toml", ledger))
    with replicas(*members):
        leader_of(members)
        wait_until(lambda: len(read_ledger(ledger)) >= 2, 20, "launches")
        raft_leader = cluster.leader()
        raft_leader.kill()
        mark = len(read_ledger(ledger))
        wait_until(lambda: len(read_ledger(ledger)) >= mark + 4, 30,
                   "launches after the raft leader died")
        raft_leader.start()
        ids = [launch_id for launch_id, _, _ in launches(ledger)]
        assert len(ids) == len(set(ids)), "a slot was launched twice"


def test_status_shows_each_replica_healthy_and_caught_up_and_a_paused_one_not(
        tmp_path: Path, cluster: EtcdCluster) -> None:
    ledger = tmp_path / "ledger"
    members = three_replicas(tmp_path, cluster, ticking_config(tmp_path / "jobs.toml", ledger))
    with replicas(*members):
        leader = leader_of(members)
        follower = next(m for m in members if m is not leader)
        wait_until(lambda: len(read_ledger(ledger)) >= 2, 20, "launches")

        def replica_rows(asked: Replica) -> dict[str, dict[str, object]]:
            return {r["id"]: r for r in asked.get("/status")["replicas"]}

        def all_caught_up() -> bool:
            rows = replica_rows(follower)
            # A launch a second moves the store a few revisions at a time.
            return len(rows) == 3 and all(
                r["healthy"] and isinstance(r["lag"], int) and r["lag"] <= 10
                for r in rows.values())

        wait_until(all_caught_up, 20, "three healthy replicas, each caught up")
        assert follower.get("/healthz")["revision"] > 0

        def follower_metrics() -> dict[str, float]:
            text = httpx.get(f"{follower.url}/metrics", timeout=5).text
            return {s.name: s.value for family in text_string_to_metric_families(text)
                    for s in family.samples}

        # Each replica measures its own lag every few seconds.
        wait_until(lambda: follower_metrics().get("distcron_replicas") == 3, 20,
                   "the follower counting three replicas")
        assert follower_metrics()["distcron_replica_lag_revisions"] <= 10

        follower.signal(signal.SIGSTOP)
        try:
            wait_until(lambda: not replica_rows(leader).get(follower.name, {"healthy": False})
                       ["healthy"], 20, "the paused follower shown unhealthy (or gone)")
        finally:
            follower.signal(signal.SIGCONT)
        wait_until(all_caught_up, 20, "the follower healthy and caught up again")
        assert_each_slot_launched_once(ledger)
