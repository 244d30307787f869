"""What the API refuses at the edge, before anything is stored: specs that could
never run (a schedule with no slot to come)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx

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
