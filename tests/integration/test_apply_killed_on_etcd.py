"""A replica applying its config file to a real 3-member etcd, SIGKILLed at
seeded points of the apply (issue 13.3): 200 jobs replaced by 200 others is
more than one transaction (etcd's 128 operations), so it goes through the
apply journal. Afterwards, once a replica leads again (started without a
file, so that it cannot simply apply the new one), the job set is exactly
the old one or exactly the new one."""

from __future__ import annotations

import asyncio
import random
import re
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest

from distcron.store import open_store
from distcron.store.layout import APPLY, JOBS, name_of
from tests.etcd_cluster import EtcdCluster
from tests.serve_harness import TOKEN, Replica, replicas
from tests.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.cluster]

OLD = [f"old-{n:03d}" for n in range(200)]
NEW = [f"new-{n:03d}" for n in range(200)]


def jobs_file(names: list[str]) -> str:
    return "\n".join(f'[[job]]\nname = "{n}"\nschedule = "@yearly"\ncommand = "true"\n'
                     for n in names)


def job_set(url: str) -> tuple[set[str], bool]:
    async def read() -> tuple[set[str], bool]:
        store = open_store(url)
        try:
            kvs, _ = await store.range(JOBS)
            return {name_of(kv.key, JOBS) for kv in kvs}, await store.get(APPLY) is not None
        finally:
            await store.close()
    return asyncio.run(read())


def loaded(replica: Replica) -> float:
    text = httpx.get(f"{replica.url}/metrics", timeout=5,
                     headers={"Authorization": f"Bearer {TOKEN}"}).text
    found = re.search(r"^distcron_jobs_loaded (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else -1.0


def killed_during_apply(tmp_path: Path, url: str, name: str, delay: float) -> str:
    """One attempt: what the kill left ("open" when it left the journal open) and
    what the next leader made of it ("old" or "new")."""
    config = tmp_path / f"{name}.toml"
    config.write_text(jobs_file(OLD))
    with replicas(Replica(tmp_path, f"{name}-first", data_dir=tmp_path / f"{name}-a",
                          config=config, extra=("--store", url))):
        pass
    config.write_text(jobs_file(NEW))
    applier = Replica(tmp_path, f"{name}-applier", data_dir=tmp_path / f"{name}-b",
                      config=config, extra=("--store", url))
    with applier.log_path.open("ab") as log:
        applier.proc = subprocess.Popen(applier.args, stdout=log, stderr=subprocess.STDOUT,
                                        env=applier.env, cwd=applier.workdir)
    # The apply starts once the process has read its file ("event=starting").
    wait_until(lambda: "event=starting" in applier.log(), 30, "the applier to start")
    time.sleep(delay)  # the kill point itself is what is tested
    applier.kill()
    applied = "event=jobs_applied" in applier.log()
    left_open = job_set(url)[1]
    survivor = Replica(tmp_path, f"{name}-survivor", data_dir=tmp_path / f"{name}-c",
                       extra=("--store", url))
    with replicas(survivor):
        wait_until(survivor.is_leader, 20, "the survivor to lead")
        wait_until(lambda: not job_set(url)[1], 20, "no apply left open")
        names, _ = job_set(url)
        assert names in (set(OLD), set(NEW)), (
            f"{name}: {len(names & set(OLD))} old + {len(names & set(NEW))} new")
        if applied or left_open:  # committed: it is finished, never rolled back
            assert names == set(NEW)
        # What the leader schedules is that set too.
        wait_until(lambda: loaded(survivor) == len(names), 20, "the leader to load them")
    return ("open, then " if left_open else "") + ("new" if names == set(NEW) else "old")


def test_a_replica_killed_during_a_large_apply_leaves_the_old_or_the_new_set(
        tmp_path: Path, etcd_cluster: EtcdCluster) -> None:
    rng = random.Random(1303)
    outcomes = [killed_during_apply(tmp_path, etcd_cluster.url(f"apply-{uuid.uuid4().hex[:8]}"),
                                    f"kill{n}", rng.uniform(0.0, 0.4)) for n in range(4)]
    print("outcomes:", outcomes)
