"""A real ``distcron serve`` running the example jobs (and a few of the tests' own),
and a real headless Chromium, both shared by the tests of this directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.sync.client import connect

from tests.dashboard.chromium import CannotStart, Chromium, Page
from tests.serve_harness import Replica, replicas

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "jobs.toml"

# Triggered by hand: prints a line, then keeps running a while before the last one.
LIVE_JOB = """
[[job]]
name = "live"
schedule = "0 0 1 1 *"
command = "echo first line of live; sleep 8; echo last line of live"
tags = ["slow"]
"""
# Paused and resumed from the page.
PAUSABLE_JOB = """
[[job]]
name = "pausable"
schedule = "0 3 * * *"
command = "true"
tags = ["nightly"]
env = { API_KEY = "s3cret-in-env" }
"""
# Two more at 03:00 UTC: the herd's hottest minute.
HERD_JOBS = "".join(f"""
[[job]]
name = "nightly-{n}"
schedule = "0 3 * * *"
command = "true"
tags = ["nightly"]
""" for n in (1, 2))


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replica]:
    workdir = tmp_path_factory.mktemp("dashboard-serve")
    config = workdir / "jobs.toml"
    config.write_text(EXAMPLES.read_text() + LIVE_JOB + PAUSABLE_JOB + HERD_JOBS)
    with replicas(Replica(workdir, "r1", data_dir=workdir / "data", config=config)) as (r1,):
        yield r1


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Page]:
    chromium = Chromium(tmp_path_factory.mktemp("chromium") / "profile")
    try:
        url = chromium.start()
    except CannotStart as exc:
        pytest.skip(f"Chromium cannot start here: {exc}")
    try:
        with connect(url, max_size=None, open_timeout=10) as websocket:
            yield Page(websocket)
    finally:
        chromium.stop()
