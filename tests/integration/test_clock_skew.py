"""A replica whose clock is 30 s fast (Debian's ``faketime``) among replicas
on time, on a real etcd (issue 13.7): it never leads while skewed, steps down
when it finds out, says why in /healthz, /status, ``distcron status`` and its
metrics, and the cluster launches on time."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.etcd_cluster import EtcdCluster
from tests.integration.test_cluster_on_etcd import launches, slot_of, ticking_config
from tests.serve_harness import TOKEN, Replica, holds_for, read_ledger, replicas
from tests.waiting import wait_until

# Preloaded into the replica itself, not through the `faketime` command: that
# one forks, and the replica it forks outlives it when the test stops it.
LIBFAKETIME = next(iter(sorted(Path("/usr/lib").glob("*/faketime/libfaketime.so.1"))), None)

pytestmark = [pytest.mark.slow, pytest.mark.cluster,
              pytest.mark.skipif(LIBFAKETIME is None,
                                 reason="no libfaketime (scripts/test installs Debian's faketime)")]

TTL = 2.0
FAST = 30.0


def replica(tmp_path: Path, name: str, config: Path, url: str, *, fast: bool = False) -> Replica:
    member = Replica(tmp_path, name, data_dir=tmp_path / f"data-{name}", config=config,
                     lease_ttl=TTL, extra=("--store", url))
    if fast:
        member.env |= {"LD_PRELOAD": str(LIBFAKETIME), "FAKETIME": f"+{FAST:g}s",
                       # A clock set wrong steps the wall clock only, as a wrong clock does.
                       "FAKETIME_DONT_FAKE_MONOTONIC": "1"}
    return member


def metrics_of(member: Replica) -> dict[str, float]:
    text = httpx.get(f"{member.url}/metrics", timeout=5).text
    return {s.name: s.value for family in text_string_to_metric_families(text)
            for s in family.samples}


def clock_problem(member: Replica) -> str | None:
    problem = member.get("/healthz")["clock_problem"]
    return str(problem) if problem else None


def assert_launched_on_time(ledger: Path, skip_fences: frozenset[int] = frozenset()) -> int:
    """No slot launched twice, and every launch but those under ``skip_fences``
    began at its slot, not before it, nor much after it; returns how many
    were checked for time."""
    ids = [launch_id for launch_id, _, _ in launches(ledger)]
    assert len(ids) == len(set(ids)), "a slot was launched twice"
    checked = [(launch_id, at - slot_of(launch_id).timestamp())
               for launch_id, fence, at in launches(ledger) if fence not in skip_fences]
    off = [(launch_id, round(lag, 3)) for launch_id, lag in checked
           if not -0.25 <= lag <= TTL + 3]
    assert not off, f"launched off time (seconds after the slot): {off}"
    return len(checked)


def test_a_fast_replica_never_leads_and_the_cluster_launches_on_time(
        tmp_path: Path, etcd_cluster: EtcdCluster) -> None:
    ledger = tmp_path / "ledger"
    config = ticking_config(tmp_path / "jobs.toml", ledger)
    url = etcd_cluster.url(f"skew-{uuid.uuid4().hex[:8]}")
    r0, r1 = (replica(tmp_path, name, config, url) for name in ("r0", "r1"))
    fast = replica(tmp_path, "fast", config, url, fast=True)
    with replicas(r0, r1, fast):
        wait_until(r0.is_leader, 20, "r0, started first, to lead")
        problem = wait_until(lambda: (p := clock_problem(fast)) and "ahead of" in p and p,
                             10, "the fast replica found ahead")
        assert "ahead of the median of 3" in problem
        health = fast.get("/healthz")
        assert FAST - 1 < health["clock_skew"] < FAST + 1 and not health["leader"]
        rows = {r["id"]: r for r in r0.get("/status")["replicas"]}
        assert "ahead of the median of 3" in rows["fast"]["clock_problem"]
        assert abs(rows["r1"]["clock_skew"]) < 1 and rows["r1"]["clock_problem"] is None
        cli = subprocess.run(
            [sys.executable, "-m", "distcron", "status", "--server", r0.url],
            capture_output=True, text=True, timeout=30, check=True,
            env={**os.environ, "DISTCRON_TOKEN": TOKEN})
        assert "warning: fast: this replica's clock is" in cli.stdout
        assert metrics_of(fast)["distcron_clock_unfit"] == 1
        assert metrics_of(r1)["distcron_clock_unfit"] == 0

        # The leader dies: one clock on time against one fast; the fast one stays out.
        mark = len(read_ledger(ledger))
        r0.kill()
        wait_until(r1.is_leader, TTL + 5, "r1 to take over")
        wait_until(lambda: len(read_ledger(ledger)) >= mark + 3, 20, "launches under r1")
        holds_for(lambda: not fast.is_leader(), 3, "the fast replica not leading")
        assert metrics_of(fast)["distcron_leader_changes_total"] == 0
        assert assert_launched_on_time(ledger) >= 5


def test_a_fast_leader_steps_down_once_the_replicas_on_time_are_heard(
        tmp_path: Path, etcd_cluster: EtcdCluster) -> None:
    ledger = tmp_path / "ledger"
    config = ticking_config(tmp_path / "jobs.toml", ledger)
    url = etcd_cluster.url(f"skew-{uuid.uuid4().hex[:8]}")
    fast = replica(tmp_path, "fast", config, url, fast=True)
    with replicas(fast):
        # Alone, it has nothing to compare with: it leads, by its own clock.
        wait_until(fast.is_leader, 20, "the lone fast replica to lead")
        with replicas(replica(tmp_path, "r0", config, url),
                      replica(tmp_path, "r1", config, url)) as (r0, r1):
            wait_until(lambda: not fast.is_leader(), 10, "the fast leader to step down")
            # Its jobs ran under its clock too (faketime is inherited): leave them out.
            fast_fences = frozenset(fence for _, fence, _ in launches(ledger))
            assert "ahead of the median of 3" in (clock_problem(fast) or "")
            leader = wait_until(lambda: next((m for m in (r0, r1) if m.is_leader()), None),
                                TTL + 5, "a replica on time to lead")
            # The fast leader recorded the next 30 s of slots as launched: the
            # slots after them are launched on time, none twice.
            wait_until(lambda: len([f for _, f, _ in launches(ledger)
                                    if f not in fast_fences]) >= 3, FAST + 15,
                       f"launches under {leader.name}")
            holds_for(lambda: not fast.is_leader(), 2, "the fast replica not leading")
            assert assert_launched_on_time(ledger, skip_fences=fast_fences) >= 3
