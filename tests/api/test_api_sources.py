"""Whose job is it: a replica's config file owns its jobs, the API owns the rest.

The file's jobs are written here as a replica writes them at start and on
SIGHUP (``apply_config_jobs``); the API then may not change them without
taking them over, and never prunes them."""

from __future__ import annotations

import httpx
import pytest

from distcron.replica.jobsync import apply_config_jobs
from distcron.store.layout import JOBS
from tests.api.conftest import NOW, FixedClock
from tests.served_api import ServedApi

CONFIG = "/etc/distcron/jobs.toml"
FILE_JOBS = """
[[job]]
name = "backup"
schedule = "0 6 * * *"
command = "backup.sh"
"""
API_JOBS = """
[[job]]
name = "report"
schedule = "0 9 * * 1"
command = "report.sh"
"""
REPORT = {"schedule": "0 9 * * 1", "command": "report.sh"}


@pytest.fixture
def file_jobs(api: ServedApi) -> None:
    api.call(apply_config_jobs(api.store, FILE_JOBS, CONFIG, FixedClock(NOW)))


def _revision(api: ServedApi) -> int:
    return int(api.call(api.store.revision()))


def test_each_job_shows_its_source_the_file_s_path_or_api(
        file_jobs: None, client: httpx.Client) -> None:
    client.put("/jobs/report", json=REPORT).raise_for_status()
    assert {job["name"]: job["source"] for job in client.get("/jobs").json()} == {
        "backup": CONFIG, "report": "api"}
    assert client.get("/jobs/backup").json()["source"] == CONFIG


def test_a_put_of_a_file_s_job_is_refused_naming_the_file_and_changes_nothing(
        file_jobs: None, api: ServedApi, client: httpx.Client) -> None:
    revision = _revision(api)
    answer = client.put("/jobs/backup", json={"schedule": "0 7 * * *", "command": "backup.sh"})
    assert answer.status_code == 409
    detail = answer.json()["detail"]
    assert CONFIG in detail and "'backup'" in detail and "take_over" in detail
    assert _revision(api) == revision


def test_a_delete_of_a_file_s_job_is_refused_naming_the_file(
        file_jobs: None, api: ServedApi, client: httpx.Client) -> None:
    answer = client.delete("/jobs/backup")
    assert answer.status_code == 409
    assert CONFIG in answer.json()["detail"]
    assert [job["name"] for job in client.get("/jobs").json()] == ["backup"]


def test_taking_over_makes_the_job_the_api_s_and_the_file_leaves_it_alone(
        file_jobs: None, api: ServedApi, client: httpx.Client) -> None:
    answer = client.put("/jobs/backup", params={"take_over": "true"},
                        json={"schedule": "0 7 * * *", "command": "backup.sh"})
    assert answer.status_code == 200, answer.text
    assert client.get("/jobs/backup").json()["source"] == "api"
    # The file, reloaded, keeps its hands off the job it no longer owns.
    api.call(apply_config_jobs(api.store, FILE_JOBS, CONFIG, FixedClock(NOW)))
    job = client.get("/jobs/backup").json()
    assert (job["schedule"], job["source"]) == ("0 7 * * *", "api")
    client.put("/jobs/backup", json={"schedule": "0 8 * * *", "command": "b"}).raise_for_status()


def test_a_delete_with_take_over_removes_a_file_s_job(
        file_jobs: None, client: httpx.Client) -> None:
    client.delete("/jobs/backup", params={"take_over": "true"}).raise_for_status()
    assert client.get("/jobs").json() == []


def test_pause_resume_and_trigger_are_allowed_on_a_file_s_job(
        file_jobs: None, api: ServedApi, client: httpx.Client) -> None:
    client.post("/jobs/backup/pause").raise_for_status()
    client.post("/jobs/backup/trigger").raise_for_status()
    # A reload of the unchanged file keeps the pause (it is run-time state).
    api.call(apply_config_jobs(api.store, FILE_JOBS, CONFIG, FixedClock(NOW)))
    assert client.get("/jobs/backup").json()["paused"] is True
    client.post("/jobs/backup/resume").raise_for_status()


def test_an_apply_never_prunes_a_file_s_jobs(file_jobs: None, client: httpx.Client) -> None:
    diff = client.post("/jobs/apply", json={"toml": API_JOBS}).json()
    assert (diff["added"], diff["removed"]) == (["report"], [])
    assert {job["name"]: job["source"] for job in client.get("/jobs").json()} == {
        "backup": CONFIG, "report": "api"}


def test_an_apply_naming_a_file_s_job_is_refused_whole_unless_it_takes_it_over(
        file_jobs: None, api: ServedApi, client: httpx.Client) -> None:
    edited = API_JOBS + FILE_JOBS.replace("0 6 * * *", "0 5 * * *")
    revision = _revision(api)
    answer = client.post("/jobs/apply", json={"toml": edited})
    assert answer.status_code == 409
    assert CONFIG in answer.json()["detail"] and "'backup'" in answer.json()["detail"]
    assert _revision(api) == revision
    diff = client.post("/jobs/apply", json={"toml": edited, "take_over": True}).json()
    assert (diff["added"], diff["changed"]) == (["report"], ["backup"])
    assert diff["changes"] == {"backup": ["schedule", "source"]}
    assert client.get("/jobs/backup").json()["source"] == "api"


def test_the_file_s_reload_never_prunes_the_api_s_jobs(
        file_jobs: None, api: ServedApi, client: httpx.Client) -> None:
    client.post("/jobs/apply", json={"toml": API_JOBS}).raise_for_status()
    api.call(apply_config_jobs(api.store, "", CONFIG, FixedClock(NOW)))
    assert [job["name"] for job in client.get("/jobs").json()] == ["report"]


def test_a_spec_may_not_say_its_own_source(client: httpx.Client) -> None:
    answer = client.put("/jobs/report", json={**REPORT, "source": "api"})
    assert answer.status_code == 422
    assert [(e["job"], e["field"]) for e in answer.json()["detail"]] == [("report", "source")]
    answer = client.post("/jobs/apply", json={"toml": API_JOBS + 'source = "/x.toml"\n'})
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["field"] == "source"


def test_jobs_stored_before_sources_were_recorded_are_claimed_by_the_file_that_names_them(
        api: ServedApi, client: httpx.Client) -> None:
    legacy = b'{"name":"backup","schedule":"0 6 * * *","command":"old.sh"}'
    api.call(api.store.put(f"{JOBS}backup", legacy))
    api.call(api.store.put(f"{JOBS}report", legacy.replace(b"backup", b"report")))
    assert client.get("/jobs/backup").json()["source"] is None
    api.call(apply_config_jobs(api.store, FILE_JOBS, CONFIG, FixedClock(NOW)))
    jobs = {job["name"]: job for job in client.get("/jobs").json()}
    assert (jobs["backup"]["source"], jobs["backup"]["command"]) == (CONFIG, "backup.sh")
    assert jobs["report"]["source"] is None  # nobody can tell whose: pruned by none
