"""A job the leader cannot schedule (a spec stored before the edge refused it,
a zone gone from the system) is quarantined: recorded, reported and shown,
while every other job keeps launching and no replica exits (issue 13.2)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx

from distcron.store import open_store
from distcron.store.layout import job_key
from tests.integration.test_serve_one_machine import write_config
from tests.serve_harness import TOKEN, Replica, ledger_job, read_ledger, replicas
from tests.waiting import wait_until

POISON = {"name": "rare", "schedule": "@every 420000w", "command": "true"}


def _store_bypassing_the_edge(db: Path, spec: dict[str, object]) -> None:
    async def put() -> None:
        store = open_store(f"sqlite:///{db}")
        try:
            await store.put(job_key(str(spec["name"])), json.dumps(spec).encode())
        finally:
            await store.close()
    asyncio.run(put())


def test_a_job_with_no_slot_is_quarantined_and_shown_while_the_others_run(
        tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    config = write_config(tmp_path / "jobs.toml", ledger_job("tick", "* * * * * *", ledger))
    first = Replica(tmp_path, "r1", data_dir=tmp_path / "data", config=config)
    second = Replica(tmp_path, "r2", data_dir=tmp_path / "data", config=config)
    with replicas(first, second):
        wait_until(lambda: read_ledger(ledger), 15, "the ticking job to run")
        # The edge refuses it now; a store written by an older version may hold it.
        refused = httpx.put(f"{first.url}/jobs/rare", json=POISON, timeout=5,
                            headers={"Authorization": f"Bearer {TOKEN}"})
        assert refused.status_code == 422 and "schedule" in refused.text
        _store_bypassing_the_edge(tmp_path / "data" / "state.db", POISON)

        def quarantined() -> str | None:
            return first.get("/jobs/rare").get("quarantined")
        reason = wait_until(quarantined, 15, "the job to be quarantined")
        assert "slot" in reason, reason
        listed = {job["name"]: job for job in first.get("/jobs")}
        assert listed["rare"]["quarantined"] == reason and listed["tick"]["quarantined"] is None
        ran = len(read_ledger(ledger))
        wait_until(lambda: len(read_ledger(ledger)) >= ran + 3, 15,
                   "the other job to keep launching")
        assert first.proc is not None and second.proc is not None
        assert first.proc.poll() is None and second.proc.poll() is None
        assert "event=job_quarantined job=rare" in first.log() + second.log()
