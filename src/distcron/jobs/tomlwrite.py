"""Writing jobs as a TOML jobs file that ``parse_jobs_toml`` reads back exactly.

Written by hand rather than with a TOML library to avoid a dependency for a
few value shapes; keys at their default are left out so the file stays short.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from distcron.durations import format_duration
from distcron.jobs.spec import JobSpec

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+", re.ASCII)
# Characters a TOML string cannot hold as they are (tab is allowed).
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\n": "\\n", "\f": "\\f", "\r": "\\r"}
# Integral seconds below this are written as "1h30m": exact both ways.
_EXACT_INTEGRAL = 2.0**53


def dump_jobs_toml(specs: Iterable[JobSpec], header: str | None = None) -> str:
    """A jobs file holding ``specs`` in order, with ``header`` as a leading comment.

    ``parse_jobs_toml(dump_jobs_toml(specs)) == list(specs)`` when the names differ."""
    lines = [_comment(line) for line in header.splitlines()] + [""] if header else []
    for spec in specs:
        lines.append("[[job]]")
        for key, field in JobSpec.model_fields.items():
            value = getattr(spec, key)
            if value is not None and value != field.get_default(call_default_factory=True):
                lines.append(f"{_key(key)} = {_value(value)}")
        lines.append("")
    return "\n".join(lines)


def _value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        # Floats in a spec are durations in seconds.
        if value.is_integer() and 0 < value < _EXACT_INTEGRAL:
            return _string(format_duration(value))
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, tuple):
        return "[" + ", ".join(_value(item) for item in value) + "]"
    if isinstance(value, Mapping):
        if not value:
            return "{}"
        return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML form for {type(value).__name__}")


def _key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else _string(key)


def _string(text: str) -> str:
    """The most readable TOML string that holds ``text`` exactly."""
    control = _CONTROL.search(text)
    if not control and '"' not in text and "\\" not in text:
        return f'"{text}"'
    # Literal strings keep backslashes as they are: shell commands read as written.
    if not control and "'" not in text:
        return f"'{text}'"
    if not _CONTROL.search(text.replace("\n", "")) and "'''" not in text and text[-1:] != "'":
        if "\n" in text or text[:1] == "'":
            # A newline right after the opening quotes is not part of the string.
            return f"'''\n{text}'''"
        return f"'''{text}'''"
    return '"' + "".join(_escape(c) for c in text) + '"'


def _escape(char: str) -> str:
    if char in _ESCAPES:
        return _ESCAPES[char]
    return f"\\u{ord(char):04X}" if _CONTROL.fullmatch(char) else char


def _comment(line: str) -> str:
    return ("# " + _CONTROL.sub("?", line)).rstrip()
