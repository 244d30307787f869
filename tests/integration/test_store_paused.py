"""Two replicas on a real 3-member etcd whose members are all paused (SIGSTOP)
and resumed, again and again: the cluster leads and launches again within
seconds each time, no slot twice, and what ``/status`` says of the leader is
what the leader's own ``/healthz`` says (issue 13.1)."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.etcd_cluster import EtcdCluster
from tests.integration.test_cluster_on_etcd import launches, ticking_config
from tests.serve_harness import Replica, holds_for, read_ledger, replicas
from tests.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.cluster]

TTL = 2.0
# Four leases long: every lease runs out while the members are stopped, as in
# the 15 s pauses the fault was first seen with.
PAUSE = 8.0
# From the members' resumption to a leader that launches: etcd elects within a
# second, the old leader key goes with its lease (revoked, or a TTL later).
RECOVERY = TTL + 5.0


def leaders_by_healthz(members: list[Replica]) -> list[str]:
    return [m.name for m in members if m.is_leader()]


def status_agrees_with_healthz(members: list[Replica]) -> str | None:
    """The one leader, when every replica's /status names it and only its
    /healthz says it leads; else None."""
    leading = leaders_by_healthz(members)
    if len(leading) != 1:
        return None
    try:
        named = {m.get("/status")["leader"] for m in members}
    except httpx.HTTPError:  # a replica not answering yet is not agreement
        return None
    return leading[0] if named == {leading[0]} else None


def test_all_etcd_members_paused_three_times_the_cluster_leads_and_launches_again(
        tmp_path: Path, etcd_cluster: EtcdCluster) -> None:
    ledger = tmp_path / "ledger"
    config = ticking_config(tmp_path / "jobs.toml", ledger)
    url = etcd_cluster.url(f"paused-{uuid.uuid4().hex[:8]}")
    members = [Replica(tmp_path, f"r{n}", data_dir=tmp_path / f"data-{n}", config=config,
                       lease_ttl=TTL, extra=("--store", url)) for n in range(2)]
    recoveries = []
    with replicas(*members):
        for _ in range(3):
            wait_until(lambda: status_agrees_with_healthz(members), 20, "one agreed leader")
            mark = len(read_ledger(ledger))
            wait_until(lambda m=mark: len(read_ledger(ledger)) >= m + 2, 20, "launches")
            for member in etcd_cluster.members:
                member.pause()
            paused_at = time.monotonic()
            wait_until(lambda: not leaders_by_healthz(members), TTL + 3,
                       "the leader to notice its lease is gone")
            stopped = len(read_ledger(ledger))
            holds_for(lambda s=stopped: len(read_ledger(ledger)) == s
                      and not leaders_by_healthz(members),
                      PAUSE - (time.monotonic() - paused_at),
                      "no leader and no launch while etcd is paused")
            for member in etcd_cluster.members:
                member.resume()
            resumed_at = time.monotonic()
            wait_until(lambda s=stopped: len(read_ledger(ledger)) >= s + 2, RECOVERY,
                       "launches again after etcd resumed")
            wait_until(lambda: status_agrees_with_healthz(members), RECOVERY,
                       "status and healthz to agree on one leader")
            recoveries.append(time.monotonic() - resumed_at)
            holds_for(lambda: status_agrees_with_healthz(members) is not None, 2 * TTL,
                      "status and healthz agreeing on one leader")
    ids = [launch_id for launch_id, _, _ in launches(ledger)]
    doubled = [i for i, n in Counter(ids).items() if n > 1]
    assert not doubled, f"launched twice: {doubled}"
    print(f"recovered (launching, agreed) in {[round(r, 2) for r in recoveries]} s")
