"""The ``distcron`` command itself."""

from __future__ import annotations

import subprocess
import sys


def test_a_bare_distcron_prints_its_commands_and_succeeds() -> None:
    done = subprocess.run([sys.executable, "-m", "distcron"], capture_output=True, text=True,
                          timeout=30, check=False)
    assert done.returncode == 0
    assert "serve" in done.stdout and "next" in done.stdout
