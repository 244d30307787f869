"""Writing jobs as a TOML jobs file that ``parse_jobs_toml`` reads back exactly.

The TOML itself is tomli-w's (the writer that pairs with ``tomllib``); this
module only shapes each job as people write it: keys at their default (and
the ``source`` distcron sets) are left out so the file stays short, and whole
seconds are written as durations ("1h30m").
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

import tomli_w

from distcron.durations import format_duration
from distcron.jobs.spec import SET_BY_DISTCRON, JobSpec

# Integral seconds below this are written as "1h30m": exact both ways.
_EXACT_INTEGRAL = 2.0**53
# What a comment line cannot hold: it ends at a newline, and TOML refuses
# control characters other than tab in it.
_NOT_IN_COMMENT = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def dump_jobs_toml(specs: Iterable[JobSpec], header: str | None = None) -> str:
    """A jobs file holding ``specs`` in order, with ``header`` as a leading comment.

    ``parse_jobs_toml(dump_jobs_toml(specs)) == list(specs)`` when the names differ."""
    lines = [_comment(line) for line in header.splitlines()] + [""] if header else []
    return "\n".join([*lines, *(_job(spec) for spec in specs)])


def _job(spec: JobSpec) -> str:
    """One ``[[job]]`` table, its tables (env, headers) after its keys as
    ``[job.KEY]``: tomli-w would write short jobs as one inline array."""
    table = _table(spec)
    # Multi-line strings read best, but tomli-w writes the "\r" of a "\r\n" in
    # them as a raw CRLF, which a reader takes as a newline: that "\r" is lost.
    multiline = not any("\r\n" in text for text in _strings(table))
    keys = {key: value for key, value in table.items() if not isinstance(value, dict)}
    parts = ["[[job]]\n" + tomli_w.dumps(keys, multiline_strings=multiline)]
    parts += [f"[job.{key}]\n" + tomli_w.dumps(value, multiline_strings=multiline)
              for key, value in table.items() if isinstance(value, dict)]
    return "\n".join(parts)


def _table(spec: JobSpec) -> dict[str, Any]:
    table: dict[str, Any] = {}
    for key, field in JobSpec.model_fields.items():
        value = getattr(spec, key)
        if key in SET_BY_DISTCRON or value is None:
            continue
        if value != field.get_default(call_default_factory=True):
            table[key] = _value(value)
    return table


def _value(value: object) -> object:
    # Floats in a spec are durations in seconds.
    if isinstance(value, float) and value.is_integer() and 0 < value < _EXACT_INTEGRAL:
        return format_duration(value)
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, dict) or hasattr(value, "items"):
        return dict(value)  # type: ignore[call-overload]
    return value


def _strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _comment(line: str) -> str:
    return ("# " + _NOT_IN_COMMENT.sub("?", line)).rstrip()
