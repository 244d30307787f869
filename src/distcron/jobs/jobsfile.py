"""Reading a TOML jobs file: all jobs or none.

Every problem in the file is collected (unknown keys, bad values, duplicate
names) and raised together as one :class:`JobSpecErrors`, so that a file is
either applied whole or not at all and its author fixes everything in one go.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from distcron.jobs.problems import JobSpecErrors, Problem, problems_from_validation_error, suggest
from distcron.jobs.spec import JobSpec

TOP_LEVEL_KEYS = ("job", "defaults")
# Keys a [defaults] table may set: policies that make sense for many jobs. What
# a job is and does (name, schedule, command, url...) is written in each job.
DEFAULTABLE_KEYS = frozenset(
    {
        "timezone",
        "owner",
        "executor",
        "env",
        "workdir",
        "timeout",
        "concurrency",
        "catchup",
        "starting_deadline",
        "idempotent",
        "retries",
        "retry_backoff",
        "tags",
        "paused",
    }
)
# Tables merged key by key with the job's own (the job's keys win); every
# other defaulted key is replaced whole by the job's value.
_MERGED_KEYS = ("env",)
# Defaults an HTTP job does not take, so that a file can mix kinds of jobs.
_NOT_FOR_HTTP = ("env", "workdir")

_JOB_HEADER = re.compile(r"\s*\[\[\s*job\s*\]\]\s*(#.*)?")
_DEFAULTS_HEADER = re.compile(r"\s*\[\s*defaults\s*\]\s*(#.*)?")


def load_jobs_file(path: str | os.PathLike[str], ignore: Collection[str] = ()) -> list[JobSpec]:
    """The jobs in the TOML file at ``path``, or JobSpecErrors listing every problem.

    OSError (missing or unreadable file) is raised as is; ``ignore`` is as for
    :func:`parse_jobs_toml`."""
    source = os.fspath(path)
    raw = Path(path).read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JobSpecErrors(
            source, [Problem(f"is not UTF-8 text (byte {exc.start + 1})")]
        ) from None
    return parse_jobs_toml(text, source=source, ignore=ignore)


def parse_jobs_toml(
    text: str, source: str = "<string>", ignore: Collection[str] = ()
) -> list[JobSpec]:
    """The jobs in TOML ``text``, in file order; ``source`` names it in errors.

    ``ignore`` names top-level keys that belong to someone else (the ``[serve]``
    table of a service config that also holds jobs); any other key is an error."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message ends with "(at line L, column C)".
        raise JobSpecErrors(source, [Problem(f"invalid TOML: {exc}")]) from None

    problems: list[Problem] = []
    known = (*TOP_LEVEL_KEYS, *ignore)
    for key in document:
        if key not in known:
            problems.append(
                Problem(
                    f"unknown top-level key {key!r}{suggest(key, known)}; "
                    "jobs go in [[job]] tables, shared settings in [defaults]"
                )
            )
    defaults = _read_defaults(document.get("defaults", {}), _header_lines(text, _DEFAULTS_HEADER))
    problems.extend(defaults.problems)
    tables = document.get("job", [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        problems.append(Problem("'job' must be an array of tables: write [[job]], not [job]"))
        tables = []

    header_lines = _header_lines(text, _JOB_HEADER)
    # Only trusted when every job was found: a "[[job]]" inside a multi-line
    # string, or jobs written as an inline array, would shift the count.
    if len(header_lines) != len(tables):
        header_lines = []
    specs: list[JobSpec] = []
    first_index: dict[str, int] = {}
    for index, table in enumerate(tables, 1):
        line = header_lines[index - 1] if header_lines else None
        name = table.get("name")
        job = name if isinstance(name, str) else None
        merged, inherited = _with_defaults(defaults.values, table)
        try:
            specs.append(JobSpec.model_validate(merged))
        except ValidationError as exc:
            for problem in problems_from_validation_error(
                exc, JobSpec.model_fields, job=job, index=index, inherited=inherited
            ):
                problems.append(_located(problem, line, defaults.line))
        if job is not None and job in first_index:
            problems.append(
                Problem(
                    f"duplicate name: job #{first_index[job]} is also called {job!r}",
                    job=job,
                    index=index,
                    field="name",
                    line=line,
                )
            )
        elif job is not None:
            first_index[job] = index

    if problems:
        # A bad default shows up once per job that inherits it: report it once.
        raise JobSpecErrors(source, dict.fromkeys(problems))
    return specs


@dataclass(frozen=True)
class _Defaults:
    values: dict[str, Any]
    problems: list[Problem]
    line: int | None


def _read_defaults(table: object, lines: list[int]) -> _Defaults:
    line = lines[0] if len(lines) == 1 else None
    if not isinstance(table, dict):
        return _Defaults({}, [Problem("'defaults' must be a table: write [defaults]")], line)
    problems = []
    for key in table:
        if key in DEFAULTABLE_KEYS:
            continue
        if key in JobSpec.model_fields:
            message = "cannot be set in [defaults]; set it in each job"
        else:
            message = f"unknown key {key!r}{suggest(key, DEFAULTABLE_KEYS)}"
        problems.append(Problem(message, field=key, line=line, in_defaults=True))
    values = {key: value for key, value in table.items() if key in DEFAULTABLE_KEYS}
    return _Defaults(values, problems, line)


def _with_defaults(
    defaults: Mapping[str, Any], table: Mapping[str, Any]
) -> tuple[dict[str, Any], set[str]]:
    """The job's table with defaults applied, and the keys that came only from defaults."""
    if table.get("executor", defaults.get("executor")) == "http":
        defaults = {k: v for k, v in defaults.items() if k not in _NOT_FOR_HTTP}
    merged = {**defaults, **table}
    for key in _MERGED_KEYS:
        if isinstance(defaults.get(key), dict) and isinstance(table.get(key), dict):
            merged[key] = {**defaults[key], **table[key]}
    return merged, {key for key in defaults if key not in table}


def _located(problem: Problem, job_line: int | None, defaults_line: int | None) -> Problem:
    return replace(problem, line=defaults_line if problem.in_defaults else job_line)


def _header_lines(text: str, header: re.Pattern[str]) -> list[int]:
    # TOML counts lines by "\n" alone (splitlines would also split at U+2028 and others).
    return [n for n, line in enumerate(text.split("\n"), 1) if header.fullmatch(line)]
