"""What the tests ask of processes they did not start themselves."""

from __future__ import annotations

from pathlib import Path


def gone(pid: int) -> bool:
    """The process has exited (a zombie waiting to be reaped counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        # ProcessLookupError: it exited between the file's open and its read.
        return True
    return stat[stat.rindex(b")") + 2:].split()[0] == b"Z"
