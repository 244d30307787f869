"""The dashboard in a real headless Chromium against a real ``distcron serve``.

Each test writes screenshots of the pages it saw into its tmp dir; a failing
assertion names the file."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from distcron.timefmt import utc_iso
from tests.dashboard.chromium import Page
from tests.serve_harness import TOKEN, Replica
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

LOCAL_SCHEMES = ("data:", "about:")


def _show(page: Page, replica: Replica, path: str, shots: Path, name: str) -> Path:
    page.open(replica.url + path)
    return page.screenshot(shots / f"{name}.png")


def _off_machine(page: Page, replica: Replica) -> list[str]:
    return [url for url in page.requested()
            if not url.startswith((replica.url + "/", *LOCAL_SCHEMES))]


def _forget_token(page: Page) -> None:
    page.evaluate("sessionStorage.clear()")


def _enter_token(page: Page, token: str) -> None:
    """Type the token into the page's form and submit it, as a person would."""
    page.evaluate(f"document.getElementById('token').value = {json.dumps(token)}")
    page.click("#token-use")


def test_each_page_loads_from_this_machine_without_console_errors(
    served: Replica, browser: Page, tmp_path: Path,
) -> None:
    run = wait_until(lambda: served.runs(job="heartbeat", state="succeeded"), 20,
                     "a heartbeat run")[0]
    pages = {"jobs": "/", "job": "/ui/jobs/report", "run": f"/ui/runs/{quote(run['launch_id'])}",
             "cluster": "/ui/cluster", "herd": "/ui/herd", "filtered": "/?tag=nightly"}
    for name, path in pages.items():
        shot = _show(browser, served, path, tmp_path, name)
        assert browser.evaluate("document.querySelector('h1').textContent"), shot
        assert _off_machine(browser, served) == [], f"{path} left the machine (see {shot})"
        assert browser.errors() == [], f"{path} logged errors (see {shot})"
        assert any(u.endswith("/ui/static/dashboard.css") for u in browser.requested()), shot


def _table(page: Page) -> list[dict[str, Any]]:
    return list(page.evaluate("""[...document.querySelectorAll('tr[data-job]')].map(tr => ({
        job: tr.dataset.job, next: tr.querySelector('.next').textContent,
        utc: tr.querySelector('.next-utc').textContent,
        cells: tr.querySelectorAll('.strip .cell').length}))"""))


def test_the_jobs_page_lists_the_example_jobs_with_their_next_slots(
    served: Replica, browser: Page, tmp_path: Path,
) -> None:
    wait_until(lambda: served.runs(job="heartbeat"), 20, "a heartbeat run")
    shot = _show(browser, served, "/", tmp_path, "jobs")
    rows = {row["job"]: row for row in _table(browser)}
    for job in ("heartbeat", "report", "slow-sync"):
        assert job in rows, f"{job} is not listed (see {shot})"
        upcoming = served.get(f"/jobs/{job}")["next"]
        utc = datetime.fromisoformat(upcoming.replace("Z", "+00:00"))
        # The page was rendered a moment before the API answered: the same slot or the one before.
        assert rows[job]["utc"].endswith(" UTC") and rows[job]["utc"] <= utc.strftime(
            "%Y-%m-%d %H:%M:%S UTC"), f"{job}: {rows[job]} vs {upcoming} (see {shot})"
    assert rows["report"]["next"].endswith((" CET", " CEST")), shot
    assert rows["heartbeat"]["cells"] >= 1, f"no strip of runs (see {shot})"


def _output(page: Page) -> str:
    return str(page.evaluate("document.getElementById('output').textContent"))


def _state(page: Page) -> str:
    return str(page.evaluate("document.querySelector('#run-state .state').textContent"))


def _open_live_run(served: Replica, browser: Page) -> str:
    """Trigger the live job, with the token in the tab, and open its page while it runs."""
    live = {"launching", "running", "queued", "retrying"}
    wait_until(lambda: not any(r["state"] in live for r in served.runs(job="live")), 30,
               "the live job's earlier run to end (concurrency forbid)")
    browser.open(served.url + "/")
    _enter_token(browser, TOKEN)
    launch = str(served.post("/jobs/live/trigger")["launch_id"])
    wait_until(lambda: any(r["launch_id"] == launch and r["state"] == "running"
                           for r in served.runs(job="live")), 20, f"{launch} to run")
    browser.open(f"{served.url}/ui/runs/{quote(launch)}")
    return launch


def test_a_running_launch_shows_its_output_while_it_runs(
    served: Replica, browser: Page, tmp_path: Path,
) -> None:
    launch = _open_live_run(served, browser)
    # The leader copies a running launch's output to the store every 2 s.
    wait_until(lambda: "first line of live" in _output(browser), 6, "the output on the page")
    shot = browser.screenshot(tmp_path / "run-live.png")
    assert served.run(launch)["state"] == "running", f"it ended before the page showed it ({shot})"
    assert "last line of live" not in _output(browser), shot
    wait_until(lambda: "last line of live" in _output(browser), 20, "the whole output at the end")


def test_a_run_page_opened_while_it_runs_follows_it_to_its_end(
    served: Replica, browser: Page, tmp_path: Path,
) -> None:
    launch = _open_live_run(served, browser)
    loads = len([e for e in browser.events if e.get("method") == "Page.loadEventFired"])
    assert _state(browser) == "running", browser.screenshot(tmp_path / "run-running.png")
    wait_until(lambda: "last line of live" in _output(browser), 30, f"{launch}'s whole output")
    shot = browser.screenshot(tmp_path / "run-done.png")
    assert _state(browser) == "succeeded", f"{_state(browser)} (see {shot})"
    assert "first line of live\nlast line of live" in _output(browser), shot
    browser.pump()
    assert len([e for e in browser.events if e.get("method") == "Page.loadEventFired"]) \
        == loads, f"the page was reloaded instead of following (see {shot})"
    assert browser.errors() == [], shot


def test_a_run_s_output_needs_the_token_on_its_page(
    served: Replica, browser: Page, tmp_path: Path,
) -> None:
    run = wait_until(lambda: served.runs(job="heartbeat", state="succeeded"), 20,
                     "a heartbeat run")[0]
    browser.open(served.url + "/")
    _forget_token(browser)
    browser.open(f"{served.url}/ui/runs/{quote(run['launch_id'])}")
    note = str(browser.evaluate("document.getElementById('output-note').textContent"))
    shot = browser.screenshot(tmp_path / "run-no-token.png")
    assert "token" in note and _output(browser) == "", f"{note!r} (see {shot})"
    _enter_token(browser, TOKEN)
    wait_until(lambda: run["launch_id"] in _output(browser), 10, "the output once the token is in")
    shot = browser.screenshot(tmp_path / "run-output.png")
    assert browser.errors() == [], shot
    _forget_token(browser)


def _paused(replica: Replica, job: str) -> bool:
    return bool(replica.get(f"/jobs/{job}")["paused"])


def _flash(page: Page) -> str:
    return str(page.evaluate("document.getElementById('flash').textContent"))


def test_pause_from_the_page_needs_the_token(
    served: Replica, browser: Page, tmp_path: Path,
) -> None:
    browser.open(served.url + "/")
    _forget_token(browser)
    browser.open(served.url + "/?name=pausable")
    browser.click('button[data-action="pause"][data-job="pausable"]')
    refused = wait_until(lambda: "refused" in _flash(browser) and _flash(browser), 10,
                         "the refusal on the page")
    shot = browser.screenshot(tmp_path / "pause-refused.png")
    assert "401" in refused and "token" in refused, f"{refused!r} (see {shot})"
    assert not _paused(served, "pausable"), f"paused without the token (see {shot})"

    _enter_token(browser, TOKEN)
    browser.click('button[data-action="pause"][data-job="pausable"]')
    wait_until(lambda: _paused(served, "pausable"), 10, "pausable to be paused")
    wait_until(lambda: browser.holds(
        "!!document.querySelector('tr.paused[data-job=pausable] .flag')"), 10,
        "the page to show it paused")
    shot = browser.screenshot(tmp_path / "paused.png")
    assert "pausable paused" in _flash(browser) or browser.evaluate(
        "!!document.querySelector('button[data-action=resume][data-job=pausable]')"), shot

    browser.click('button[data-action="resume"][data-job="pausable"]')
    wait_until(lambda: not _paused(served, "pausable"), 10, "pausable to be resumed")
    wait_until(lambda: browser.holds(
        "document.readyState === 'complete' && "
        "!!document.querySelector('button[data-action=pause][data-job=pausable]')"), 10,
        "the page to show it resumed")
    browser.click('button[data-action="trigger"][data-job="pausable"]')
    said = wait_until(lambda: "triggered as" in _flash(browser) and _flash(browser), 10,
                      "the page to say it triggered")
    launch = said.rsplit(" ", 1)[1]
    assert launch.startswith("pausable@manual-"), said
    wait_until(lambda: any(r["launch_id"] == launch and r["state"] == "succeeded"
                           for r in served.runs(job="pausable")), 20, f"{launch} to run")
    _forget_token(browser)


def test_the_token_form_keeps_the_token_for_the_tab_only(
    served: Replica, browser: Page,
) -> None:
    browser.open(served.url + "/")
    _forget_token(browser)
    browser.open(served.url + "/")
    assert browser.evaluate("document.getElementById('token-state').textContent") == "no token"
    _enter_token(browser, "something")
    assert browser.evaluate("sessionStorage.getItem('distcron-token')") == "something"
    assert browser.evaluate("localStorage.length") == 0
    assert browser.evaluate("document.getElementById('token').value") == ""
    browser.click("#token-forget")
    assert browser.evaluate("sessionStorage.getItem('distcron-token')") is None
    assert httpx.get(served.url + "/", timeout=5).status_code == 200


def _backfill(page: Page, start: str, end: str, *, dry_run: bool) -> None:
    page.evaluate(f"""(() => {{
        const form = document.getElementById('backfill-form');
        form.elements.from.value = {json.dumps(start)};
        form.elements.to.value = {json.dumps(end)};
        form.elements.dry_run.checked = {json.dumps(dry_run)};
        form.requestSubmit();
    }})()""")


def test_backfill_from_the_job_page_lists_then_launches_each_missing_slot_once(
    served: Replica, browser: Page, tmp_path: Path,
) -> None:
    # pausable runs at 03:00 UTC: the one of two days ago has no record yet.
    day = (datetime.now(UTC) - timedelta(days=2)).replace(hour=3, minute=0, second=0,
                                                          microsecond=0)
    start, end = utc_iso(day - timedelta(hours=1)), utc_iso(day + timedelta(hours=1))
    launch = f"pausable@{utc_iso(day)}"
    browser.open(served.url + "/")
    _enter_token(browser, TOKEN)
    browser.open(served.url + "/ui/jobs/pausable")

    def result() -> str:
        return str(browser.evaluate("document.getElementById('backfill-result').textContent"))
    _backfill(browser, start, end, dry_run=True)
    listed = wait_until(lambda: "would launch" in result() and result(), 10, "the dry run")
    assert f"would launch: {launch}" in listed, browser.screenshot(tmp_path / "dry.png")
    assert not any(r["launch_id"] == launch for r in served.runs(job="pausable"))

    _backfill(browser, start, end, dry_run=False)
    wait_until(lambda: "launched: " in result(), 10, "the backfill")
    wait_until(lambda: any(r["launch_id"] == launch and r["state"] == "succeeded"
                           for r in served.runs(job="pausable")), 20, f"{launch} to run")
    _backfill(browser, start, end, dry_run=False)  # again: the slot has its record now
    again = wait_until(lambda: "recorded (succeeded)" in result() and result(), 10,
                       "the second backfill")
    assert "launched 0" in again, browser.screenshot(tmp_path / "again.png")
    assert [r["launch_id"] for r in served.runs(job="pausable")].count(launch) == 1
    _forget_token(browser)
