"""``distcron jobs``, ``runs`` and ``status`` run as real processes against a real server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from distcron.cli.render import relative, table
from distcron.scheduler.records import LaunchRecord, LaunchState, launch_id_for
from distcron.store import open_store
from distcron.store.layout import launch_key, output_key, replica_key
from tests.served_api import ServedApi, StaticReplica
from tests.waiting import wait_until

DISTCRON = str(Path(sys.executable).with_name("distcron"))
TOKEN = "cli-token-81d3"
JOBS_FILE = """
[[job]]
name = "backup"
schedule = "0 6 * * *"
command = "backup.sh"

[[job]]
name = "report"
schedule = "*/5 * * * *"
timezone = "Europe/Berlin"
command = "report.sh"
"""


@pytest.fixture
def api(tmp_path: Path) -> Iterator[ServedApi]:
    served = ServedApi(lambda: open_store(f"sqlite:///{tmp_path / 'state.db'}"),
                       StaticReplica("r1", "127.0.0.1:8500", is_leader=True),
                       TOKEN, CollectorRegistry())
    with served:
        yield served


@pytest.fixture
def jobs_file(tmp_path: Path) -> Path:
    path = tmp_path / "jobs.toml"
    path.write_text(JOBS_FILE)
    return path


def distcron(*args: str, server: str | None, token: str | None = TOKEN,
             ) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DISTCRON_SERVER", "DISTCRON_TOKEN")}
    env["XDG_STATE_HOME"] = "/nonexistent"  # no token left by a replica of this machine
    if server is not None:
        env["DISTCRON_SERVER"] = server
    if token is not None:
        env["DISTCRON_TOKEN"] = token
    return subprocess.run([DISTCRON, *args], env=env, capture_output=True, text=True,
                          timeout=60, check=False)


def ok(*args: str, server: str, token: str | None = TOKEN) -> str:
    done = distcron(*args, server=server, token=token)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_jobs_apply_then_list_as_json_gives_every_job_with_next_and_last_run(
    api: ServedApi, jobs_file: Path
) -> None:
    diff = json.loads(ok("jobs", "apply", str(jobs_file), "--json", server=api.url))
    assert diff["added"] == ["backup", "report"]
    jobs = json.loads(ok("jobs", "list", "--json", server=api.url))
    assert [job["name"] for job in jobs] == ["backup", "report"]
    assert {"schedule", "timezone", "next", "paused", "last_run"} <= set(jobs[0])


def test_jobs_apply_prints_the_diff_and_a_dry_run_says_nothing_changed(
    api: ServedApi, jobs_file: Path
) -> None:
    out = ok("jobs", "apply", str(jobs_file), "--dry-run", server=api.url)
    assert out.splitlines() == ["added:     backup, report", "changed:   -", "removed:   -",
                                "unchanged: -", "dry run: nothing was changed"]
    assert json.loads(ok("jobs", "list", "--json", server=api.url)) == []


def test_jobs_list_prints_an_aligned_table_with_relative_times(
    api: ServedApi, jobs_file: Path
) -> None:
    ok("jobs", "apply", str(jobs_file), server=api.url)
    header, backup, report = ok("jobs", "list", server=api.url).splitlines()
    assert header.split() == ["NAME", "SCHEDULE", "TZ", "NEXT", "LAST", "RUN", "SOURCE"]
    assert backup.startswith("backup  0 6 * * *    UTC")
    assert report.index("*/5") == header.index("SCHEDULE")
    assert report.split()[-4] == "in" and report.split()[-2:] == ["-", "api"]
    assert report.index("api") == header.index("SOURCE")


def test_a_dry_run_names_the_fields_that_change_per_changed_job(
    api: ServedApi, jobs_file: Path
) -> None:
    ok("jobs", "apply", str(jobs_file), server=api.url)
    jobs_file.write_text(JOBS_FILE.replace("0 6 * * *", "0 7 * * *")
                         .replace('command = "report.sh"', 'command = "r.sh"\nretries = 2'))
    out = ok("jobs", "apply", str(jobs_file), "--dry-run", server=api.url)
    assert "changed:   backup (schedule), report (command, retries)" in out.splitlines()
    diff = json.loads(ok("jobs", "apply", str(jobs_file), "--dry-run", "--json",
                         server=api.url))
    assert diff["changes"] == {"backup": ["schedule"], "report": ["command", "retries"]}


def test_jobs_show_pause_resume_trigger_and_remove_say_what_they_did(
    api: ServedApi, jobs_file: Path
) -> None:
    ok("jobs", "apply", str(jobs_file), server=api.url)
    shown = ok("jobs", "show", "report", server=api.url)
    assert "timezone:" in shown and "Europe/Berlin" in shown
    assert ok("jobs", "pause", "report", server=api.url) == "paused job report\n"
    assert "paused" in ok("jobs", "list", server=api.url).splitlines()[2]
    assert ok("jobs", "resume", "report", server=api.url) == "resumed job report\n"
    triggered = ok("jobs", "trigger", "report", server=api.url)
    assert triggered.startswith("triggered job report: launch report@manual-")
    assert ok("jobs", "remove", "report", server=api.url) == "removed job report\n"
    assert [j["name"] for j in json.loads(ok("jobs", "list", "--json", server=api.url))] == [
        "backup"]


def _seed_runs(api: ServedApi) -> list[LaunchRecord]:
    now = datetime.now(UTC).replace(microsecond=0)
    slot = now - timedelta(hours=2)
    records = [
        LaunchRecord(launch_id=launch_id_for("backup", slot), job="backup", slot=slot,
                     state=LaunchState.SUCCEEDED, worker="w1", exit_code=0,
                     started_at=slot, ended_at=slot + timedelta(minutes=3)),
        LaunchRecord(launch_id=launch_id_for("backup", slot - timedelta(days=1)), job="backup",
                     slot=slot - timedelta(days=1), state=LaunchState.FAILED, exit_code=1),
    ]
    for record in records:
        api.call(api.store.put(launch_key(record.launch_id), record.to_json()))
    api.call(api.store.put(output_key(records[0].launch_id), b"3 tables dumped\n"))
    return records


def test_runs_as_json_is_a_list_with_every_run_field(api: ServedApi) -> None:
    records = _seed_runs(api)
    runs = json.loads(ok("runs", "--json", server=api.url))
    assert [r["launch_id"] for r in runs] == [r.launch_id for r in records]
    for run in runs:
        assert {"launch_id", "job", "slot", "state", "worker", "exit_code", "started_at",
                "ended_at"} <= set(run)
    failed = json.loads(ok("runs", "--state", "failed", "--json", server=api.url))
    assert [r["launch_id"] for r in failed] == [records[1].launch_id]


def test_runs_prints_a_table_by_slot_newest_first_with_reason_count_and_relative_times(
    api: ServedApi
) -> None:
    records = _seed_runs(api)
    slot = records[1].slot
    assert slot is not None
    # A span of skipped slots between the two, ended long after both: ordered by slot.
    span = LaunchRecord(launch_id=launch_id_for("backup", slot + timedelta(hours=1)),
                        job="backup", slot=slot + timedelta(hours=1),
                        until=slot + timedelta(hours=3), count=3, state=LaunchState.SKIPPED,
                        reason="the job is paused", ended_at=datetime.now(UTC))
    api.call(api.store.put(launch_key(span.launch_id), span.to_json()))
    header, first, second, third = ok("runs", "--job", "backup", server=api.url).splitlines()
    assert header.split() == ["LAUNCH", "ID", "STATE", "REASON", "COUNT", "WORKER", "EXIT",
                              "STARTED", "ENDED"]
    assert first.split() == [records[0].launch_id, "succeeded", "-", "1", "w1", "0", "2h",
                             "ago", "1h", "ago"]
    assert second.split() == [span.launch_id, "skipped", "the", "job", "is", "paused", "3",
                              "-", "-", "-", "now"]
    assert third.split() == [records[1].launch_id, "failed", "-", "1", "-", "1", "-", "-"]


def test_runs_show_prints_the_output_with_a_token_and_says_why_not_without(
    api: ServedApi
) -> None:
    launch_id = _seed_runs(api)[0].launch_id
    shown = ok("runs", "show", launch_id, server=api.url)
    assert f"launch_id:  {launch_id}" in shown
    assert shown.endswith("--- output ---\n3 tables dumped\n")
    without = ok("runs", "show", launch_id, server=api.url, token=None)
    assert "set DISTCRON_TOKEN" in without
    assert "3 tables dumped" not in without
    detail = json.loads(ok("runs", "show", launch_id, "--json", server=api.url))
    assert detail["output"] == "3 tables dumped\n"


def test_runs_show_lists_each_earlier_attempt_with_its_own_output(api: ServedApi) -> None:
    slot = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    launch_id = launch_id_for("backup", slot)
    first = LaunchRecord(launch_id=launch_id, job="backup", slot=slot, state=LaunchState.FAILED,
                         exit_code=3, started_at=slot, ended_at=slot + timedelta(minutes=1))
    record = first.with_attempt_done(LaunchState.FAILED, "exit 3").model_copy(update={
        "attempt": 2, "run_id": f"{launch_id}~2", "state": LaunchState.SUCCEEDED,
        "exit_code": 0, "started_at": slot + timedelta(minutes=2),
        "ended_at": slot + timedelta(minutes=3)})
    api.call(api.store.put(launch_key(launch_id), record.to_json()))
    api.call(api.store.put(output_key(launch_id), b"disk full\n"))
    api.call(api.store.put(output_key(f"{launch_id}~2"), b"3 tables dumped\n"))
    shown = ok("runs", "show", launch_id, server=api.url)
    assert "earlier attempts:" in shown
    [row] = [line for line in shown.splitlines() if line.startswith("1 ")]
    assert row.split()[:3] == ["1", "failed", "3"]
    assert shown.endswith("--- output of attempt 1 ---\ndisk full\n"
                          "--- output ---\n3 tables dumped\n")
    detail = json.loads(ok("runs", "show", launch_id, "--json", server=api.url))
    assert [(a["attempt"], a["exit_code"], a["output"]) for a in detail["attempts"]] == [
        (1, 3, "disk full\n")]


def _follower(launch_id: str, server: str) -> tuple[subprocess.Popen[bytes], list[bytes]]:
    """``distcron runs show ID --follow`` started, and what it printed so far."""
    env = {k: v for k, v in os.environ.items() if k != "DISTCRON_SERVER"}
    env.update(DISTCRON_SERVER=server, DISTCRON_TOKEN=TOKEN, XDG_STATE_HOME="/nonexistent")
    process = subprocess.Popen([DISTCRON, "runs", "show", launch_id, "--follow"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    printed: list[bytes] = []

    def read() -> None:
        assert process.stdout is not None
        for line in iter(process.stdout.readline, b""):
            printed.append(line)

    threading.Thread(target=read, daemon=True).start()
    return process, printed


@pytest.mark.parametrize("outcome, code", [(LaunchState.SUCCEEDED, 0),
                                           (LaunchState.FAILED, 1)])
def test_runs_show_follow_prints_the_output_as_it_is_written_and_exits_with_the_outcome(
    api: ServedApi, outcome: LaunchState, code: int
) -> None:
    slot = datetime.now(UTC).replace(microsecond=0)
    running = LaunchRecord(launch_id=launch_id_for("backup", slot), job="backup", slot=slot,
                           state=LaunchState.RUNNING, started_at=slot)
    api.call(api.store.put(launch_key(running.launch_id), running.to_json()))
    api.call(api.store.put(output_key(running.launch_id), b"dumping users\n"))
    process, printed = _follower(running.launch_id, api.url)
    wait_until(lambda: b"dumping users\n" in printed, 20, "the first line, while it runs")
    api.call(api.store.put(output_key(running.launch_id), b"dumping users\ndumping orders\n"))
    wait_until(lambda: b"dumping orders\n" in printed, 20, "the second line, while it runs")
    ended = running.model_copy(update={"state": outcome, "ended_at": slot})
    api.call(api.store.put(output_key(running.launch_id),
                           b"dumping users\ndumping orders\ndone\n"))
    api.call(api.store.put(launch_key(running.launch_id), ended.to_json()))
    assert process.wait(timeout=30) == code
    wait_until(lambda: printed and printed[-1].startswith(b"--- "), 5, "the last line")
    lines = b"".join(printed).decode().splitlines()
    start = lines.index("--- output (following) ---")
    assert lines[start + 1:] == ["dumping users", "dumping orders", "done", "",
                                 f"--- {outcome.value} ---"]


def test_runs_show_follow_without_the_token_is_refused(api: ServedApi) -> None:
    done = distcron("runs", "show", "backup@x", "--follow", server=api.url, token=None)
    assert done.returncode == 1
    assert "DISTCRON_TOKEN" in done.stderr


def test_status_as_json_has_the_design_shape(api: ServedApi) -> None:
    body = {"id": "r1", "listen": "127.0.0.1:8500", "started_at": "2026-11-24T05:00:00Z",
            "version": "0.1.0"}
    api.call(api.store.put(replica_key("r1"), json.dumps(body).encode()))
    status = json.loads(ok("status", "--json", server=api.url))
    assert (status["leader"], status["fence"], status["workers"]) == (None, None, [])
    [replica] = status["replicas"]
    assert {"id", "listen", "is_leader", "healthy"} <= set(replica)
    human = ok("status", server=api.url)
    assert "leader:" in human and "none" in human
    assert "127.0.0.1:8500" in human and "workers: none registered" in human


def test_server_given_on_the_command_line_wins_over_the_environment(api: ServedApi) -> None:
    done = distcron("status", "--json", "--server", api.url, server="http://127.0.0.1:9")
    assert done.returncode == 0, done.stderr
    done = distcron("runs", "--server", api.url, "show", "x@y", server="http://127.0.0.1:9")
    assert "not found" in done.stderr


def test_an_unreachable_server_is_a_clear_error_with_exit_1() -> None:
    done = distcron("status", server="http://127.0.0.1:9")
    assert done.returncode == 1
    assert "cannot reach the distcron server at http://127.0.0.1:9" in done.stderr
    assert "DISTCRON_SERVER" in done.stderr


def test_a_wrong_token_is_exit_1_saying_so(api: ServedApi, jobs_file: Path) -> None:
    done = distcron("jobs", "apply", str(jobs_file), server=api.url, token="wrong")
    assert done.returncode == 1
    assert "wrong API token" in done.stderr


def test_an_unknown_job_is_exit_1_naming_it(api: ServedApi) -> None:
    done = distcron("jobs", "show", "ghost", server=api.url)
    assert done.returncode == 1
    assert "job 'ghost' not found" in done.stderr


def test_a_bad_jobs_file_is_exit_2_listing_every_problem(api: ServedApi, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(JOBS_FILE.replace("0 6 * * *", "0 6 * * 8").replace("Berlin", "Berlim"))
    done = distcron("jobs", "apply", str(bad), server=api.url)
    assert done.returncode == 2
    assert "nothing changed" in done.stderr
    assert "'backup'" in done.stderr and "'report'" in done.stderr
    assert json.loads(ok("jobs", "list", "--json", server=api.url)) == []


def test_relative_times_read_like_people_say_them() -> None:
    now = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)
    assert relative("2026-11-24T06:03:10Z", now) == "in 3m"
    assert relative("2026-11-24T04:00:00+00:00", now) == "2h ago"
    assert relative("2026-11-21T06:00:00Z", now) == "3d ago"
    assert relative("2026-11-24T06:00:00Z", now) == "now"
    assert relative(None, now) == "-"


def test_tables_pad_every_column_to_its_widest_cell() -> None:
    assert table(("A", "BB"), [("xyz", "1"), ("q", "22")]) == "A    BB\nxyz  1\nq    22"


def test_a_launch_committed_ahead_of_its_slot_reads_staged_until_it_starts(
        api: ServedApi) -> None:
    slot = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=4)
    staged = LaunchRecord(launch_id=launch_id_for("backup", slot), job="backup", slot=slot,
                          state=LaunchState.LAUNCHING, staged=True, intent_at=datetime.now(UTC))
    api.call(api.store.put(launch_key(staged.launch_id), staged.to_json()))
    [_, row] = ok("runs", "--job", "backup", server=api.url).splitlines()
    assert row.split()[:2] == [staged.launch_id, "staged"]
    # Once it runs, it reads as it is.
    running = staged.model_copy(update={"state": LaunchState.RUNNING, "started_at": slot})
    api.call(api.store.put(launch_key(staged.launch_id), running.to_json()))
    [_, row] = ok("runs", "--job", "backup", server=api.url).splitlines()
    assert row.split()[1] == "running"
