"""Human output for the client commands: aligned tables and relative times."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


def parse_time(value: str | None) -> datetime | None:
    """An ISO-8601 instant from the API (``Z`` or an offset), or None."""
    return None if not value else datetime.fromisoformat(value)


def relative(value: str | None, now: datetime) -> str:
    """``in 3m``, ``2h ago``, ``now``; ``-`` when there is no time."""
    when = parse_time(value)
    if when is None:
        return "-"
    seconds = (when - now).total_seconds()
    if abs(seconds) < 1:
        return "now"
    span = _span(abs(seconds))
    return f"in {span}" if seconds > 0 else f"{span} ago"


def _span(seconds: float) -> str:
    """The largest whole unit: 59s, 3m, 2h, 5d (a glance, not a stopwatch)."""
    whole = int(seconds)
    for unit, size in _UNITS:
        if whole >= size:
            return f"{whole // size}{unit}"
    return "0s"


def table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Columns padded to their widest cell, two spaces apart."""
    lines = [list(headers), *(list(row) for row in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(headers))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def fields(pairs: Iterable[tuple[str, str]]) -> str:
    """``key: value`` lines with the values aligned."""
    items = list(pairs)
    width = max((len(key) for key, _ in items), default=0) + 1
    return "\n".join(f"{key + ':':<{width}} {value}" for key, value in items)


def text(value: object) -> str:
    """A JSON value as a table cell: ``-`` for null, ``yes``/``no`` for booleans."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def shorten(value: str, width: int) -> str:
    """``value`` cut to ``width`` characters, ``…`` saying it was."""
    return value if len(value) <= width else value[: width - 1] + "…"


def shown_state(run: Mapping[str, Any]) -> str:
    """A launch's state as people read it: one committed ahead of its slot and
    not started yet is "staged", not "launching"."""
    if run.get("staged") and run["state"] == "launching" and not run.get("started_at"):
        return "staged"
    return str(run["state"])
