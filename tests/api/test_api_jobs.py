"""Jobs over HTTP: create, read, replace, remove, pause, resume, trigger."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta

import httpx

from distcron.scheduler.records import LaunchRecord, LaunchState, launch_id_for
from distcron.store.layout import TRIGGERS, cursor_key, job_key, launch_key
from tests.served_api import ServedApi

BACKUP = {"schedule": "0 6 * * *", "command": "backup.sh --all"}


def test_a_created_job_reads_back_with_its_next_slot_in_utc_and_no_last_run(
    api: ServedApi, client: httpx.Client
) -> None:
    created = client.put("/jobs/backup", json={**BACKUP, "timezone": "Europe/Berlin"})
    assert created.status_code == 201, created.text
    assert created.json()["name"] == "backup"

    job = client.get("/jobs/backup").json()
    assert job["command"] == "backup.sh --all"
    assert job["timezone"] == "Europe/Berlin"
    assert job["paused"] is False
    # 05:30Z is 06:30 in Berlin: the next 06:00 there is tomorrow's, 05:00Z.
    assert job["next"] == "2026-11-25T05:00:00Z"
    assert job["last_run"] is None
    assert [j["name"] for j in client.get("/jobs").json()] == ["backup"]


def test_creating_a_job_writes_its_cursor_at_the_creation_instant_in_the_same_revision(
    api: ServedApi, client: httpx.Client
) -> None:
    client.put("/jobs/backup", json=BACKUP).raise_for_status()
    job = api.call(api.store.get(job_key("backup")))
    cursor = api.call(api.store.get(cursor_key("backup")))
    assert job is not None and cursor is not None
    assert cursor.mod_revision == job.mod_revision
    slot = datetime.fromisoformat(json.loads(cursor.value)["slot"])
    assert slot == api.clock.now()


def test_replacing_a_job_keeps_its_cursor_and_answers_200(
    api: ServedApi, client: httpx.Client
) -> None:
    client.put("/jobs/backup", json=BACKUP).raise_for_status()
    before = api.call(api.store.get(cursor_key("backup")))
    replaced = client.put("/jobs/backup", json={**BACKUP, "schedule": "30 6 * * *"})
    assert replaced.status_code == 200, replaced.text
    assert client.get("/jobs/backup").json()["schedule"] == "30 6 * * *"
    assert api.call(api.store.get(cursor_key("backup"))) == before


def test_a_body_naming_another_job_is_rejected_naming_the_field(client: httpx.Client) -> None:
    answer = client.put("/jobs/backup", json={**BACKUP, "name": "other"})
    assert answer.status_code == 422
    [error] = answer.json()["detail"]
    assert (error["job"], error["field"]) == ("backup", "name")
    assert client.get("/jobs/backup").status_code == 404


def test_a_bad_spec_is_rejected_naming_job_and_field_and_stores_nothing(
    api: ServedApi, client: httpx.Client
) -> None:
    revision = api.call(api.store.revision())
    answer = client.put("/jobs/backup", json={"schedule": "0 25 * * *", "command": "x"})
    assert answer.status_code == 422
    [error] = answer.json()["detail"]
    assert (error["job"], error["field"]) == ("backup", "schedule")
    assert "hour" in error["msg"]
    assert api.call(api.store.revision()) == revision


def test_removing_a_job_deletes_its_cursor_and_keeps_its_launch_records(
    api: ServedApi, client: httpx.Client, seed: Callable[..., None]
) -> None:
    client.put("/jobs/backup", json=BACKUP).raise_for_status()
    slot = api.clock.now() - timedelta(hours=1)
    record = LaunchRecord(launch_id=launch_id_for("backup", slot), job="backup", slot=slot,
                          state=LaunchState.SUCCEEDED)
    seed(record)
    answer = client.delete("/jobs/backup")
    assert answer.json() == {"job": "backup", "removed": True}
    assert api.call(api.store.get(job_key("backup"))) is None
    assert api.call(api.store.get(cursor_key("backup"))) is None
    assert api.call(api.store.get(launch_key(record.launch_id))) is not None


def test_a_job_shows_its_latest_launch_as_last_run(
    api: ServedApi, client: httpx.Client, seed: Callable[..., None]
) -> None:
    client.put("/jobs/backup", json=BACKUP).raise_for_status()
    now = api.clock.now()
    older, newer = now - timedelta(days=2), now - timedelta(days=1)
    seed(*(LaunchRecord(launch_id=launch_id_for("backup", slot), job="backup", slot=slot,
                        state=state, exit_code=code)
           for slot, state, code in ((newer, LaunchState.FAILED, 3),
                                     (older, LaunchState.SUCCEEDED, 0))))
    last = client.get("/jobs/backup").json()["last_run"]
    assert last["launch_id"] == launch_id_for("backup", newer)
    assert (last["state"], last["exit_code"]) == ("failed", 3)
    assert client.get("/jobs").json()[0]["last_run"] == last


def test_a_launch_staged_ahead_of_its_slot_is_not_the_last_run(
    api: ServedApi, client: httpx.Client, seed: Callable[..., None]
) -> None:
    client.put("/jobs/backup", json=BACKUP).raise_for_status()
    now = api.clock.now()
    ran, staged = now - timedelta(seconds=10), now + timedelta(seconds=5)
    seed(LaunchRecord(launch_id=launch_id_for("backup", ran), job="backup", slot=ran,
                      state=LaunchState.SUCCEEDED, exit_code=0),
         LaunchRecord(launch_id=launch_id_for("backup", staged), job="backup", slot=staged,
                      state=LaunchState.LAUNCHING, staged=True))
    for last in (client.get("/jobs/backup").json()["last_run"],
                 client.get("/jobs").json()[0]["last_run"]):
        assert (last["launch_id"], last["state"]) == (launch_id_for("backup", ran), "succeeded")


def test_unknown_jobs_are_404_naming_the_job(client: httpx.Client) -> None:
    for method, path in (("GET", "/jobs/ghost"), ("DELETE", "/jobs/ghost"),
                         ("POST", "/jobs/ghost/pause"), ("POST", "/jobs/ghost/resume"),
                         ("POST", "/jobs/ghost/trigger")):
        answer = client.request(method, path)
        assert answer.status_code == 404, (method, path)
        assert "'ghost'" in answer.json()["detail"]


def test_pause_and_resume_rewrite_the_spec_and_a_replace_keeps_the_pause(
    client: httpx.Client
) -> None:
    client.put("/jobs/backup", json=BACKUP).raise_for_status()
    assert client.post("/jobs/backup/pause").json()["paused"] is True
    assert client.get("/jobs/backup").json()["paused"] is True
    # A spec that does not say "paused" leaves it as it is ...
    client.put("/jobs/backup", json={**BACKUP, "schedule": "0 7 * * *"}).raise_for_status()
    assert client.get("/jobs/backup").json()["paused"] is True
    assert client.post("/jobs/backup/resume").json()["paused"] is False
    # ... and one that does, sets it.
    client.put("/jobs/backup", json={**BACKUP, "paused": True}).raise_for_status()
    assert client.get("/jobs/backup").json()["paused"] is True


def test_pausing_a_paused_job_changes_nothing(api: ServedApi, client: httpx.Client) -> None:
    client.put("/jobs/backup", json={**BACKUP, "paused": True}).raise_for_status()
    revision = api.call(api.store.revision())
    assert client.post("/jobs/backup/pause").status_code == 200
    assert api.call(api.store.revision()) == revision


def test_a_trigger_writes_a_trigger_key_with_a_manual_launch_id(
    api: ServedApi, client: httpx.Client
) -> None:
    client.put("/jobs/backup", json=BACKUP).raise_for_status()
    answer = client.post("/jobs/backup/trigger")
    assert answer.status_code == 202
    launch_id = answer.json()["launch_id"]
    assert launch_id.startswith("backup@manual-20261124T053000-")
    kvs, _ = api.call(api.store.range(TRIGGERS))
    [trigger] = kvs
    body = json.loads(trigger.value)
    assert body["job"] == "backup"
    assert body["launch_id"] == launch_id
    assert datetime.fromisoformat(body["requested_at"]) == api.clock.now()
