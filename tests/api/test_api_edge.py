"""What the API refuses at the edge, before anything is stored: specs that could
never run (a schedule with no slot to come, a command the kernel refuses) and
requests too large or too deep to handle."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx

from distcron.api.apply import MAX_APPLY_JOBS
from distcron.api.limits import MAX_BODY_BYTES
from distcron.jobs.spec import MAX_ARGUMENT_BYTES
from tests.served_api import ServedApi

DISTCRON = str(Path(sys.executable).with_name("distcron"))
NEVER = "@every 420000w"


def _next_says(expr: str) -> str:
    done = subprocess.run([DISTCRON, "next", expr], capture_output=True, text=True,
                          timeout=30, check=False)
    assert done.returncode != 0
    return done.stderr.strip().removeprefix("error: ")


def test_a_put_of_a_schedule_with_no_slot_is_refused_as_distcron_next_refuses_it(
        api: ServedApi, client: httpx.Client) -> None:
    answer = client.put("/jobs/rare", json={"schedule": NEVER, "command": "true"})
    assert answer.status_code == 422
    (problem,) = answer.json()["detail"]
    assert (problem["job"], problem["field"]) == ("rare", "schedule")
    assert _next_says(NEVER) in problem["msg"]
    assert api.call(api.store.range(""))[0] == []


def test_an_apply_of_a_schedule_with_no_slot_is_refused_naming_the_job_and_line(
        api: ServedApi, client: httpx.Client) -> None:
    toml = (f'[[job]]\nname = "fine"\nschedule = "@daily"\ncommand = "true"\n\n'
            f'[[job]]\nname = "rare"\ncommand = "true"\nschedule = "{NEVER}"\n')
    answer = client.post("/jobs/apply", json={"toml": toml, "source": "jobs.toml"})
    assert answer.status_code == 422
    (problem,) = answer.json()["detail"]
    assert (problem["job"], problem["field"], problem["line"]) == ("rare", "schedule", 9)
    assert problem["msg"].startswith("jobs.toml:9: job 'rare', field 'schedule': no more slots")
    assert api.call(api.store.range(""))[0] == []


def _job(name: str, **keys: str) -> str:
    lines = [f'name = "{name}"', 'schedule = "@daily"', *(f"{k} = {v}" for k, v in keys.items())]
    return "[[job]]\n" + "\n".join(lines) + "\n"


def test_a_body_over_the_limit_is_refused_with_413_before_it_is_read(
        api: ServedApi, client: httpx.Client) -> None:
    big = "x" * (MAX_BODY_BYTES + 1)
    answer = client.post("/jobs/apply", json={"toml": big})
    assert answer.status_code == 413
    assert f"at most {MAX_BODY_BYTES} bytes" in answer.json()["detail"]
    # Streamed without a Content-Length, it is cut off as it comes in.
    chunks = (b"x" * 65536 for _ in range(MAX_BODY_BYTES // 65536 + 2))
    answer = client.put("/jobs/big", content=chunks,
                        headers={"Content-Type": "application/json"})
    assert answer.status_code == 413
    assert api.call(api.store.range(""))[0] == []


def test_a_toml_nested_500_deep_is_a_422_naming_the_problem(client: httpx.Client) -> None:
    for deep in ("x = " + "[" * 500 + "]" * 500 + "\n", "x = " + "[" * 20 + "]" * 20 + "\n"):
        answer = client.post("/jobs/apply", json={"toml": deep})
        assert answer.status_code == 422, answer.text
        assert "nested more than" in answer.json()["detail"][0]["msg"]


def test_an_apply_of_more_jobs_than_one_apply_takes_is_a_422(client: httpx.Client) -> None:
    toml = "".join(_job(f"j{n}", command='"true"') for n in range(MAX_APPLY_JOBS + 1))
    answer = client.post("/jobs/apply", json={"toml": toml, "dry_run": True})
    assert answer.status_code == 422
    assert f"more than the {MAX_APPLY_JOBS} one apply takes" in answer.json()["detail"][0]["msg"]


def test_a_command_longer_than_the_kernel_takes_is_refused_naming_e2big(
        client: httpx.Client) -> None:
    long = "echo " + "x" * MAX_ARGUMENT_BYTES
    answer = client.put("/jobs/long", json={"schedule": "@daily", "command": long})
    assert answer.status_code == 422
    (problem,) = answer.json()["detail"]
    assert (problem["job"], problem["field"]) == ("long", "command")
    assert "E2BIG" in problem["msg"]
    toml = _job("long", argv=f'["echo", "{"y" * (MAX_ARGUMENT_BYTES + 1)}"]')
    answer = client.post("/jobs/apply", json={"toml": toml})
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["field"] == "argv"
    env = "{" + ", ".join(f'V{n} = "{"z" * 100_000}"' for n in range(11)) + "}"
    answer = client.post("/jobs/apply", json={"toml": _job("wide", command='"true"', env=env)})
    assert answer.status_code == 422
    assert "E2BIG" in answer.json()["detail"][0]["msg"]


def test_a_toml_syntax_error_names_the_file_and_line(client: httpx.Client) -> None:
    answer = client.post("/jobs/apply", json={"toml": '[[job]]\nname = "a" x\n',
                                              "source": "mine.toml"})
    assert answer.status_code == 422
    (problem,) = answer.json()["detail"]
    assert problem["line"] == 2
    assert problem["msg"].startswith("mine.toml:2: invalid TOML: ")
