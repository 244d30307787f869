"""``serve`` reads only the ``[serve]`` table of its config file at start when
it can cut it out safely (the jobs are read later, and not at all when the file
was applied unchanged: see test_jobsync_unchanged.py). Cut or not, the settings
and whether the file declares jobs are what a parse of the whole file says."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import tomli
from hypothesis import given
from hypothesis import strategies as st

from distcron.replica.config import load_config_file

SECTIONS = {
    "serve": '[serve]\nlisten = "127.0.0.1:8600"  # a comment\nhistory = 50\n',
    "serve_sub": '[serve.smtp]\nhost = "mail.example"\n',
    "job": '[[job]]\nname = "tick"\nschedule = "* * * * *"\ncommand = "echo [serve]"\n',
    "job_argv": '[[job]]\nname = "tock"\nschedule = "@daily"\nargv = [\n  "echo",\n  "x",\n]\n',
    "defaults": '[defaults]\ntimezone = "Europe/Amsterdam"\n',
    "notifier": '[[notifier]]\nname = "ops"\nurl = "https://hooks.example/x"\n',
    "multiline": '[[job]]\nname = "multi"\nschedule = "@hourly"\n'
                 'command = """\n[serve]\nlisten = "0.0.0.0:1"\n"""\n',
    "comment": "# only a comment\n",
    "root_key": 'serve.history = 7\n',
}


@given(st.lists(st.sampled_from(sorted(SECTIONS)), max_size=6, unique=True))
def test_settings_and_jobs_are_those_of_the_whole_file(tmp_path_factory: pytest.TempPathFactory,
                                                       names: list[str]) -> None:
    # A root key is only valid first, and one table only once.
    names = sorted(names, key=lambda n: n != "root_key")
    if "root_key" in names and "serve" in names:
        names.remove("serve")
    text = "\n".join(SECTIONS[n] for n in names)
    path = tmp_path_factory.mktemp("config") / "distcron.toml"
    path.write_text(text)
    whole = tomli.loads(text)
    serve = whole.pop("serve", {})
    found = load_config_file(path)
    assert found.settings == serve
    assert found.has_jobs == bool(whole)
    if found.document is not None:
        assert found.document == whole


def test_a_syntax_error_among_the_jobs_stops_serve_naming_the_file_and_line(
        tmp_path: Path) -> None:
    path = tmp_path / "distcron.toml"
    path.write_text('[serve]\nhistory = 50\n\n[[job]]\nname = "bad\n')
    assert load_config_file(path).settings == {"history": 50}  # the jobs are read later
    done = subprocess.run(
        [sys.executable, "-m", "distcron", "serve", "--config", str(path), "--data-dir",
         str(tmp_path / "data"), "--listen", "127.0.0.1:1"],
        check=False, capture_output=True, text=True, timeout=60, cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if not k.startswith("DISTCRON_")})
    assert done.returncode == 1
    assert re.search(r"distcron.toml.*line 5", done.stderr), done.stderr
