"""The dashboard's pages over plain HTTP from a real ``distcron serve``: each renders,
says what the API says, filters and pages the jobs, and needs nothing from elsewhere."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from urllib.parse import quote
from zoneinfo import ZoneInfo

import httpx
import pytest
from markupsafe import escape

from tests.dashboard.conftest import EXAMPLES
from tests.serve_harness import Replica, replicas
from tests.waiting import wait_until

pytestmark = pytest.mark.slow
EXAMPLE_JOBS = re.findall(r'^name = "([^"]+)"', EXAMPLES.read_text(), re.MULTILINE)


def _get(replica: Replica, path: str) -> httpx.Response:
    response = httpx.get(replica.url + path, timeout=10)
    assert response.status_code == 200, f"{path}: {response.status_code} {response.text[:500]}"
    assert response.headers["content-type"].startswith("text/html")
    return response


def _rows(html: str) -> list[str]:
    return re.findall(r'<tr data-job="([^"]+)"', html)


def test_the_jobs_page_lists_every_job_with_its_next_slot_in_its_zone_and_in_utc(
    served: Replica,
) -> None:
    html = _get(served, "/").text
    assert set(EXAMPLE_JOBS) <= set(_rows(html))
    report = served.get("/jobs/report")
    slot = datetime.fromisoformat(report["next"].replace("Z", "+00:00"))
    row = html.split('<tr data-job="report"', 1)[1].split("</tr>", 1)[0]
    assert slot.strftime("%Y-%m-%d %H:%M:%S UTC") in row
    local = slot.astimezone(ZoneInfo("Europe/Amsterdam"))
    assert local.strftime("%Y-%m-%d %H:%M:%S ") + str(local.tzname()) in row
    assert "Monday to Friday" in row  # the schedule in words


def test_jobs_filter_by_name_tag_and_state(served: Replica) -> None:
    assert _rows(_get(served, "/?name=NIGHTLY").text) == ["nightly-1", "nightly-2"]
    assert _rows(_get(served, "/?tag=nightly").text) == ["nightly-1", "nightly-2", "pausable"]
    assert _rows(_get(served, "/?tag=slow&name=ive").text) == ["live"]
    assert "No job matches." in _get(served, "/?state=paused").text
    never = _rows(_get(served, "/?state=never-run").text)
    assert {"nightly-1", "nightly-2", "pausable"} <= set(never)
    wait_until(lambda: served.runs(job="heartbeat", state="succeeded"), 20, "a heartbeat run")
    assert "heartbeat" in _rows(_get(served, "/?state=succeeded").text)
    bad = httpx.get(served.url + "/?state=bogus", timeout=10)
    assert bad.status_code == 422 and "state 'bogus' is not one of: paused" in bad.text


def test_job_run_cluster_and_herd_pages_say_what_the_api_says(served: Replica) -> None:
    runs = wait_until(lambda: served.runs(job="heartbeat", state="succeeded"), 20,
                      "a heartbeat run")
    job = _get(served, "/ui/jobs/heartbeat").text
    assert "*/10 * * * * *" in job and "every 10 seconds" in job
    slots = job.split('<table class="slots">', 1)[1].split("</table>", 1)[0]
    assert len(re.findall(r"<tr><td>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC</td>", slots)) == 10
    assert f'/ui/runs/{quote(runs[0]["launch_id"], safe="")}' in job
    run = _get(served, f'/ui/runs/{quote(runs[0]["launch_id"], safe="")}').text
    assert runs[0]["launch_id"] in run and "state-succeeded" in run
    cluster = _get(served, "/ui/cluster").text
    assert "<td>r1</td>" in cluster and "<b>leader</b>" in cluster
    assert f"fence {served.get('/status')['fence']}" in cluster
    assert "One SQLite file on this machine" in cluster  # a store with no members
    herd = _get(served, "/ui/herd").text
    hottest = herd.split('<table class="hottest">', 1)[1].split("</tr>", 2)[1]
    assert "03:00:00 UTC</td><td>3</td>" in hottest
    assert all(f">{job}</a>" in hottest for job in ("nightly-1", "nightly-2", "pausable"))
    steady = herd.split("Steady load", 1)[1]
    assert ">heartbeat</a>: 6.0 launches a minute" in steady


def test_secrets_stay_redacted_and_unknown_names_are_404(served: Replica) -> None:
    job = _get(served, "/ui/jobs/pausable").text
    assert "API_KEY" in job and "redacted" in job and "s3cret-in-env" not in job
    for path in ("/ui/jobs/nope", "/ui/runs/nope@2026-01-01T00:00:00Z"):
        response = httpx.get(served.url + path, timeout=10)
        assert response.status_code == 404 and "not found" in response.text


def test_docs_are_gone_offline_the_schema_stays_and_assets_are_local(served: Replica) -> None:
    for path in ("/docs", "/redoc"):
        assert httpx.get(served.url + path, timeout=10).status_code == 404
    schema = httpx.get(served.url + "/openapi.json", timeout=10).json()
    assert "/jobs/{name}/pause" in schema["paths"] and "/ui/herd" not in schema["paths"]
    html = _get(served, "/").text
    for asset in re.findall(r'(?:src|href)="(/ui/static/[^"]+)"', html):
        assert httpx.get(served.url + asset, timeout=10).status_code == 200, asset
    assert not re.search(r'(?:src|href)="(?:https?:)?//', html), "a reference off the machine"


def test_the_jobs_page_is_paged_for_many_jobs(tmp_path: Path) -> None:
    with replicas(Replica(tmp_path, "r1", data_dir=tmp_path / "data")) as (r1,):
        headers = {"Authorization": f"Bearer {r1.env['DISTCRON_TOKEN']}"}
        with httpx.Client(base_url=r1.url, headers=headers, timeout=10) as http:
            for n in range(250):
                http.put(f"/jobs/bulk-{n:03d}", json={
                    "schedule": f"{n % 60} * * * *", "command": "true"}).raise_for_status()
        first = _rows(_get(r1, "/").text)
        assert first == [f"bulk-{n:03d}" for n in range(100)]
        last = _get(r1, "/?page=3").text
        assert _rows(last) == [f"bulk-{n:03d}" for n in range(200, 250)]
        assert "page 3 of 3" in last and "250 of 250 jobs" in last
        assert _rows(_get(r1, "/?page=99").text) == _rows(last)  # past the end: the last
        some = _get(r1, "/?name=bulk-2&page=2").text  # one page: the first
        assert _rows(some) == [f"bulk-{n:03d}" for n in range(200, 250)]
        assert "50 of 250 jobs" in some and "page 1 of" not in some
        herd = _get(r1, "/ui/herd").text
        assert "6000 launches of\n  250 jobs" in herd


def test_a_quarantined_job_is_flagged_with_its_reason(tmp_path: Path) -> None:
    from tests.integration.test_quarantine import POISON, _store_bypassing_the_edge

    with replicas(Replica(tmp_path, "r1", data_dir=tmp_path / "data")) as (r1,):
        _store_bypassing_the_edge(tmp_path / "data" / "state.db", POISON)
        reason = wait_until(lambda: r1.get("/jobs/rare").get("quarantined"), 15,
                            "the job to be quarantined")
        row = _get(r1, "/").text.split('<tr data-job="rare"', 1)[1].split("</tr>", 1)[0]
        assert f'title="{escape(reason)}">quarantined</span>' in row
        assert escape(reason) in _get(r1, "/ui/jobs/rare").text


def test_the_job_page_shows_skipped_slots_with_their_reason_and_durations(
    served: Replica,
) -> None:
    skipped = wait_until(lambda: served.runs(job="slow-sync", state="skipped"), 40,
                         "a skipped slot of slow-sync (concurrency forbid)")[0]
    done = wait_until(lambda: served.runs(job="heartbeat", state="succeeded"), 20,
                      "a heartbeat run")[0]
    page = _get(served, "/ui/jobs/slow-sync").text
    row = page.split(f'/ui/runs/{quote(skipped["launch_id"], safe="")}"', 1)[1]
    row = row.split("</tr>", 1)[0]
    assert "state-skipped" in row and str(escape(skipped["reason"])) in row, row
    if skipped["count"] > 1:
        assert f"<td>{skipped['count']}</td>" in row
    beat = _get(served, "/ui/jobs/heartbeat").text
    row = beat.split(f'/ui/runs/{quote(done["launch_id"], safe="")}"', 1)[1].split("</tr>", 1)[0]
    assert re.search(r"<td>\d+\.\d s</td>", row) and 'class="bar"><span' in row, row


def test_the_run_page_lists_every_earlier_attempt_with_its_end(tmp_path: Path) -> None:
    config = tmp_path / "jobs.toml"
    config.write_text('[[job]]\nname = "flaky"\nschedule = "0 0 1 1 *"\n'
                      'command = "echo try; exit 3"\nretries = 2\nretry_backoff = "1s"\n')
    with replicas(Replica(tmp_path, "r1", data_dir=tmp_path / "data", config=config)) as (r1,):
        launch = str(r1.post("/jobs/flaky/trigger")["launch_id"])
        ended = wait_until(lambda: (run := r1.run(launch))["state"] == "failed" and run, 30,
                           f"{launch} to fail its last attempt")
        assert [a["attempt"] for a in ended["attempts"]] == [1, 2]
        page = _get(r1, f"/ui/runs/{quote(launch, safe='')}").text
    table = page.split('id="attempts"', 1)[1].split("</table>", 1)[0]
    rows = re.findall(r"<tr><td>(\d)</td><td>(.*?)</td>", table)
    assert [number for number, _ in rows] == ["2", "1"], table
    assert all("state-failed" in state for _, state in rows), table
    assert "Output of attempt 3" in page
