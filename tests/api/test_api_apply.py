"""A whole jobs file applied over HTTP: all or nothing, with a diff."""

from __future__ import annotations

import json

import httpx

from distcron.store.layout import CURSORS, JOBS, NOTIFIERS, cursor_key, job_key, notifier_key
from tests.served_api import ServedApi

FILE = """
[[job]]
name = "backup"
schedule = "0 6 * * *"
command = "backup.sh"

[[job]]
name = "report"
schedule = "0 9 * * 1"
command = "report.sh"
"""

EDITED = """
[[job]]
name = "backup"
schedule = "0 7 * * *"
command = "backup.sh"

[[job]]
name = "cleanup"
schedule = "*/15 * * * *"
command = "cleanup.sh"
"""


def _apply(client: httpx.Client, toml: str, **options: bool) -> httpx.Response:
    return client.post("/jobs/apply", json={"toml": toml, **options})


def _stored(api: ServedApi, prefix: str) -> dict[str, bytes]:
    kvs, _ = api.call(api.store.range(prefix))
    return {kv.key: kv.value for kv in kvs}


def test_a_first_apply_adds_every_job_with_its_cursor_in_one_revision(
    api: ServedApi, client: httpx.Client
) -> None:
    answer = _apply(client, FILE)
    assert answer.status_code == 200, answer.text
    diff = answer.json()
    assert (diff["added"], diff["changed"], diff["removed"], diff["unchanged"]) == (
        ["backup", "report"], [], [], [])
    assert diff["dry_run"] is False
    kvs, _ = api.call(api.store.range(""))
    assert {kv.key for kv in kvs} == {job_key("backup"), job_key("report"),
                                      cursor_key("backup"), cursor_key("report")}
    assert {kv.mod_revision for kv in kvs} == {diff["revision"]}


def test_a_dry_run_reports_the_diff_and_changes_nothing(
    api: ServedApi, client: httpx.Client
) -> None:
    _apply(client, FILE).raise_for_status()
    revision = api.call(api.store.revision())
    diff = _apply(client, EDITED, dry_run=True).json()
    assert (diff["added"], diff["changed"], diff["removed"], diff["unchanged"]) == (
        ["cleanup"], ["backup"], ["report"], [])
    assert diff["dry_run"] is True
    assert diff["revision"] == revision
    assert api.call(api.store.revision()) == revision


def test_applying_an_edited_file_adds_changes_and_removes_jobs_and_their_cursors(
    api: ServedApi, client: httpx.Client
) -> None:
    _apply(client, FILE).raise_for_status()
    old_cursor = api.call(api.store.get(cursor_key("backup")))
    diff = _apply(client, EDITED).json()
    assert (diff["added"], diff["changed"], diff["removed"]) == (["cleanup"], ["backup"],
                                                                 ["report"])
    assert set(_stored(api, JOBS)) == {job_key("backup"), job_key("cleanup")}
    assert set(_stored(api, CURSORS)) == {cursor_key("backup"), cursor_key("cleanup")}
    assert json.loads(_stored(api, JOBS)[job_key("backup")])["schedule"] == "0 7 * * *"
    assert api.call(api.store.get(cursor_key("backup"))) == old_cursor


def test_applying_the_same_file_again_changes_nothing(
    api: ServedApi, client: httpx.Client
) -> None:
    _apply(client, FILE).raise_for_status()
    revision = api.call(api.store.revision())
    diff = _apply(client, FILE).json()
    assert diff["unchanged"] == ["backup", "report"]
    assert diff["added"] == diff["changed"] == diff["removed"] == []
    assert api.call(api.store.revision()) == revision


def test_without_prune_jobs_missing_from_the_file_stay(
    api: ServedApi, client: httpx.Client
) -> None:
    _apply(client, FILE).raise_for_status()
    diff = _apply(client, EDITED, prune=False).json()
    assert diff["removed"] == []
    assert set(_stored(api, JOBS)) == {job_key(n) for n in ("backup", "report", "cleanup")}


def test_a_paused_job_stays_paused_when_the_file_does_not_say(client: httpx.Client) -> None:
    _apply(client, FILE).raise_for_status()
    client.post("/jobs/backup/pause").raise_for_status()
    diff = _apply(client, FILE).json()
    assert diff["unchanged"] == ["backup", "report"]
    assert client.get("/jobs/backup").json()["paused"] is True
    diff = _apply(client, FILE.replace('command = "backup.sh"',
                                       'command = "backup.sh"\npaused = false')).json()
    assert diff["changed"] == ["backup"]
    assert client.get("/jobs/backup").json()["paused"] is False


def test_a_file_with_errors_is_rejected_whole_listing_every_error_and_changes_nothing(
    api: ServedApi, client: httpx.Client
) -> None:
    _apply(client, FILE).raise_for_status()
    before = _stored(api, "")
    revision = api.call(api.store.revision())
    bad = EDITED.replace("0 7 * * *", "0 7 * * 9").replace(
        'command = "cleanup.sh"', 'command = "cleanup.sh"\ntimezone = "Mars/Olympus"')
    answer = _apply(client, bad)
    assert answer.status_code == 422
    errors = answer.json()["detail"]
    assert {(e["job"], e["field"]) for e in errors} == {("backup", "schedule"),
                                                        ("cleanup", "timezone")}
    assert all(e["line"] for e in errors)
    assert api.call(api.store.revision()) == revision
    assert _stored(api, "") == before


def test_a_file_that_is_not_toml_is_rejected_with_422(client: httpx.Client) -> None:
    answer = _apply(client, "[[job]\nname = ")
    assert answer.status_code == 422
    assert "TOML" in answer.json()["detail"][0]["msg"]


WITH_NOTIFIERS = """
[[notifier]]
name = "ops"
url = "https://hooks.example/ops"

[[job]]
name = "backup"
schedule = "0 6 * * *"
command = "backup.sh"
notify = ["ops"]
"""


def test_a_files_notifiers_are_applied_with_its_jobs_and_pruned_with_them(
    api: ServedApi, client: httpx.Client
) -> None:
    answer = _apply(client, WITH_NOTIFIERS)
    assert answer.status_code == 200, answer.text
    assert answer.json()["notifiers_added"] == ["ops"]
    stored = json.loads(_stored(api, NOTIFIERS)[notifier_key("ops")])
    assert stored == {"name": "ops", "url": "https://hooks.example/ops", "source": "api"}
    again = _apply(client, WITH_NOTIFIERS).json()
    assert (again["notifiers_added"], again["notifiers_changed"]) == ([], [])
    moved = _apply(client, WITH_NOTIFIERS.replace("/ops", "/ops2")).json()
    assert moved["notifiers_changed"] == ["ops"]
    gone = _apply(client, FILE).json()  # the file declares no notifier any more
    assert gone["notifiers_removed"] == ["ops"]
    assert _stored(api, NOTIFIERS) == {}


def test_a_job_naming_a_notifier_that_is_nowhere_is_refused_naming_job_field_and_notifier(
    api: ServedApi, client: httpx.Client
) -> None:
    revision = api.call(api.store.revision())
    answer = _apply(client, WITH_NOTIFIERS.replace('notify = ["ops"]', 'notify = ["pager"]'))
    assert answer.status_code == 422
    [error] = answer.json()["detail"]
    assert (error["job"], error["field"]) == ("backup", "notify")
    assert "'pager'" in error["msg"]
    assert api.call(api.store.revision()) == revision
    # A notifier already in the store (put through the API) is one a job may name,
    # unless the apply prunes it (it is the API's, and the file does not declare it).
    client.put("/notifiers/pager", json={"url": "mailto:pager@example.com"}).raise_for_status()
    naming = WITH_NOTIFIERS.replace('notify = ["ops"]', 'notify = ["pager"]')
    assert _apply(client, naming).status_code == 422
    named = _apply(client, naming, prune=False)
    assert named.status_code == 200, named.text
