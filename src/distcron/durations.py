"""Durations written the way people write them: ``90s``, ``1h30m``, ``2d``, ``250ms``."""

from __future__ import annotations

import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d|w)", re.ASCII)


def parse_duration(text: str) -> float:
    """Seconds in ``text``: one or more ``<number><unit>`` parts (units ms s m h d w),
    or a bare number of seconds. Raises ValueError saying what is wrong."""
    s = text.strip().lower()
    if not s:
        raise ValueError("empty duration (expected e.g. 90s, 1h30m)")
    if re.fullmatch(r"[0-9]+(?:\.[0-9]+)?", s, re.ASCII):
        return float(s)
    pos = 0
    total = 0.0
    for match in _PART.finditer(s):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(s):
        raise ValueError(
            f"bad duration {text!r} at character {pos + 1}: expected <number><unit> "
            "with unit ms, s, m, h, d or w (e.g. 90s, 1h30m)"
        )
    return total


def format_duration(seconds: float) -> str:
    """The shortest exact form of a whole number of seconds: 5400 -> ``1h30m``."""
    if seconds != int(seconds) or seconds <= 0:
        return f"{seconds:g}s"
    rest = int(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            parts.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(parts)
