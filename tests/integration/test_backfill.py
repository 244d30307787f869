"""``jobs backfill`` against a real ``distcron serve``: each missing slot of a past
range launched once, the recorded ones left as they are. The job appends its
launch id to a ledger file; the test counts what really ran."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from distcron.scheduler.records import launch_id_for
from distcron.timefmt import utc_iso
from tests.serve_harness import TOKEN, Replica, holds_for, ledger_job, read_ledger, replicas
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

DISTCRON = str(Path(sys.executable).with_name("distcron"))


def backfill(member: Replica, start: datetime, end: datetime, *,
             dry_run: bool = False) -> dict[str, Any]:
    response = httpx.post(f"{member.url}/jobs/tick/backfill", timeout=10,
                          headers={"Authorization": f"Bearer {TOKEN}"},
                          json={"from": utc_iso(start), "to": utc_iso(end), "dry_run": dry_run})
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


def slot_of(launch_id: str) -> datetime:
    return datetime.fromisoformat(launch_id.split("@", 1)[1].replace("Z", "+00:00"))


def test_a_backfill_over_recorded_slots_launches_only_the_missing_ones_once(
    tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger"
    config = tmp_path / "jobs.toml"
    config.write_text(ledger_job("tick", "*/2 * * * * *", ledger))
    with replicas(Replica(tmp_path, "r1", data_dir=tmp_path / "data", config=config)) as (r1,):
        wait_until(r1.is_leader, 10, "leadership")
        wait_until(lambda: len(read_ledger(ledger)) >= 3, 20, "three scheduled runs")
        r1.post("/jobs/tick/pause")
        scheduled = read_ledger(ledger)
        recorded = {r["launch_id"] for r in r1.runs(job="tick")}
        first, last = min(map(slot_of, scheduled)), max(map(slot_of, scheduled))
        # From 10 s before the job's first slot (slots it never had) to its last run.
        start = first - timedelta(seconds=10)
        missing = [launch_id_for("tick", start + timedelta(seconds=2 * n)) for n in range(5)]

        dry = backfill(r1, start, last, dry_run=True)
        assert [s["launch_id"] for s in dry["launched"]] == missing
        assert {s["launch_id"] for s in dry["existing"]} >= set(scheduled)
        assert {s["launch_id"] for s in dry["existing"]} <= recorded
        holds_for(lambda: read_ledger(ledger) == scheduled, 1.5, "a dry run launches nothing")

        done = backfill(r1, start, last)
        assert [s["launch_id"] for s in done["launched"]] == missing
        again = backfill(r1, start, last)  # asked again at once: nothing more runs
        assert not set(s["launch_id"] for s in again["launched"]) - set(missing)

        wait_until(lambda: set(missing) <= set(read_ledger(ledger)), 30, "the backfilled runs")
        holds_for(lambda: not [k for k, n in Counter(read_ledger(ledger)).items() if n > 1],
                  3, "every slot ran once")
        assert sorted(read_ledger(ledger)) == sorted([*scheduled, *missing])
        runs = {r["launch_id"]: r for r in r1.runs(job="tick")}
        assert all(runs[m]["kind"] == "backfill" and runs[m]["state"] == "succeeded"
                   for m in missing)
        third = backfill(r1, start, last)
        assert third["launched"] == []
        assert {s["launch_id"] for s in third["existing"]} >= {*missing, *scheduled}

        env = {**os.environ, "DISTCRON_SERVER": r1.url, "DISTCRON_TOKEN": TOKEN}
        shown = subprocess.run([DISTCRON, "jobs", "backfill", "tick", "--from", utc_iso(start),
                                "--to", utc_iso(last), "--dry-run"], env=env,
                               capture_output=True, text=True, timeout=30, check=False)
        assert shown.returncode == 0, shown.stderr
        assert shown.stdout.startswith("would launch 0 slots of job tick\n")
        assert missing[0] in shown.stdout and "already recorded" in shown.stdout


def test_a_backfill_into_the_future_or_of_too_many_slots_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "jobs.toml"
    config.write_text(ledger_job("tick", "*/2 * * * * *", tmp_path / "ledger", paused=True))
    with replicas(Replica(tmp_path, "r1", data_dir=tmp_path / "data", config=config)) as (r1,):
        now = datetime.now(UTC)
        headers = {"Authorization": f"Bearer {TOKEN}"}

        def refused(start: datetime, end: datetime) -> str:
            response = httpx.post(f"{r1.url}/jobs/tick/backfill", headers=headers, timeout=10,
                                  json={"from": utc_iso(start), "to": utc_iso(end)})
            assert response.status_code == 422, response.text
            return str(response.json()["detail"])

        assert "in the future" in refused(now - timedelta(minutes=1), now + timedelta(hours=1))
        assert "more than 1000 slots" in refused(now - timedelta(hours=1), now)
        assert "is after 'to'" in refused(now - timedelta(minutes=1), now - timedelta(hours=1))
        unauthorized = httpx.post(f"{r1.url}/jobs/tick/backfill", timeout=10, json={
            "from": utc_iso(now - timedelta(minutes=1)), "to": utc_iso(now)})
        assert unauthorized.status_code == 401
        assert r1.runs(job="tick") == [] or all(
            r["kind"] != "backfill" for r in r1.runs(job="tick"))
