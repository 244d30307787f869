"""The systemd units shipped in deploy/systemd, checked by systemd's own
``systemd-analyze verify`` (this machine has systemd's tools but does not boot
with systemd, so the units cannot be started here). The guide installs
distcron under /opt/distcron; the check points the units at this checkout's
``distcron`` instead, so that it verifies everything else as written."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parent.parent / "deploy" / "systemd"
INSTALLED = "/opt/distcron/bin/distcron"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze is missing (scripts/test installs Debian's systemd)")
@pytest.mark.parametrize("unit", sorted(p.name for p in UNITS.glob("*.service")))
def test_the_unit_file_is_valid_for_systemd(tmp_path: Path, unit: str) -> None:
    text = (UNITS / unit).read_text()
    assert INSTALLED in text  # where docs/cluster.md installs it
    here = Path(sys.executable).with_name("distcron")
    (tmp_path / unit).write_text(text.replace(INSTALLED, str(here)))
    done = subprocess.run(["systemd-analyze", "verify", str(tmp_path / unit)],
                          check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr
