"""Reading a TOML jobs file: all jobs (and ``[[notifier]]`` tables) or none.

Every problem in the file is collected (unknown keys, bad values, duplicate
names) and raised together as one :class:`JobSpecErrors`, so that a file is
either applied whole or not at all and its author fixes everything in one go.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import tomli
from pydantic import ValidationError

from distcron.bulk import collector_held
from distcron.jobs.notifier import NotifierSpec
from distcron.jobs.problems import JobSpecErrors, Problem, problems_from_validation_error, suggest
from distcron.jobs.spec import AUTHOR_KEYS, SET_BY_DISTCRON, JobSpec, validate_spec

TOP_LEVEL_KEYS = ("job", "defaults", "notifier")
# The document, [[job]] (2), a table or list in it (3), a list in a table (4):
# anything deeper is a mistake, or an attack on the parser.
MAX_DEPTH = 8
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
_NOTIFIER_HEADER = re.compile(r"\s*\[\[\s*notifier\s*\]\]\s*(#.*)?")
_DEFAULTS_HEADER = re.compile(r"\s*\[\s*defaults\s*\]\s*(#.*)?")


def load_jobs_file(path: str | os.PathLike[str], ignore: Collection[str] = (),
                   now: datetime | None = None) -> list[JobSpec]:
    """The jobs in the TOML file at ``path``, or JobSpecErrors listing every problem.

    OSError (missing or unreadable file) is raised as is; ``ignore`` and ``now``
    are as for :func:`parse_jobs_toml`."""
    source = os.fspath(path)
    raw = Path(path).read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JobSpecErrors(
            source, [Problem(f"is not UTF-8 text (byte {exc.start + 1})")]
        ) from None
    return parse_jobs_toml(text, source=source, ignore=ignore, now=now)


@dataclass(frozen=True)
class JobsFile:
    """What a jobs file declares: its jobs and its notifiers, in file order."""

    jobs: list[JobSpec]
    notifiers: list[NotifierSpec]


def parse_jobs_toml(
    text: str, source: str = "<string>", ignore: Collection[str] = (),
    now: datetime | None = None, max_jobs: int | None = None,
    document: dict[str, Any] | None = None,
) -> list[JobSpec]:
    """The jobs in TOML ``text`` (see :func:`parse_jobs_file`)."""
    return parse_jobs_file(text, source, ignore, now, max_jobs, document).jobs


@collector_held()
def parse_jobs_file(
    text: str, source: str = "<string>", ignore: Collection[str] = (),
    now: datetime | None = None, max_jobs: int | None = None,
    document: dict[str, Any] | None = None,
) -> JobsFile:
    """The jobs and ``[[notifier]]`` tables in TOML ``text``, in file order;
    ``source`` names it in errors.

    ``ignore`` names top-level keys that belong to someone else (the ``[serve]``
    table of a service config that also holds jobs); any other key is an error.
    Every schedule must have a slot after ``now`` (default: the wall clock).
    More than ``max_jobs`` jobs is refused before any is validated.
    ``document``: ``text`` already parsed, by a caller that needed it first."""
    if document is None:
        document = read_toml(text, source)
    elif _depth(document) > MAX_DEPTH:
        document = read_toml(text, source)  # says why, as for any text
    lines = text.split("\n")  # TOML counts lines by "\n" alone, not as splitlines does
    known = (*TOP_LEVEL_KEYS, *ignore)
    problems = [
        Problem(f"unknown top-level key {key!r}{suggest(key, known)}; "
                "jobs go in [[job]] tables, shared settings in [defaults]",
                line=_top_level_line(lines, key))
        for key in document if key not in known
    ]
    defaults = _read_defaults(document.get("defaults", {}), _header_lines(lines, _DEFAULTS_HEADER))
    tables = document.get("job", [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        problems.append(Problem("'job' must be an array of tables: write [[job]], not [job]"))
        tables = []
    if max_jobs is not None and len(tables) > max_jobs:
        raise JobSpecErrors(source, [Problem(
            f"holds {len(tables)} jobs, more than the {max_jobs} one apply takes: apply it "
            "in parts (--no-prune), or give the jobs to a replica's config file")])
    header_lines = _header_lines(lines, _JOB_HEADER)
    # Only trusted when every job was found: a "[[job]]" inside a multi-line
    # string, or jobs written as an inline array, would shift the count.
    if len(header_lines) != len(tables):
        header_lines = []
    places = _Places(lines, _regions(lines, header_lines, defaults.line), bool(header_lines))
    problems += [places.locate(problem, 0) for problem in defaults.problems]
    specs: list[JobSpec] = []
    first_index: dict[str, int] = {}
    now = now or datetime.now(UTC)
    for index, table in enumerate(tables, 1):
        spec, found = _read_job(table, index, defaults, now)
        problems += [places.locate(problem, index) for problem in found]
        if spec is not None:
            specs.append(spec)
        if spec is not None and spec.name in first_index:
            problems.append(places.locate(Problem(
                f"duplicate name: job #{first_index[spec.name]} is also called {spec.name!r}",
                job=spec.name, index=index, field="name"), index))
        elif spec is not None:
            first_index[spec.name] = index
    notifiers, found = _read_notifiers(document.get("notifier", []),
                                       _header_lines(lines, _NOTIFIER_HEADER))
    problems += found
    if problems:
        # A bad default shows up once per job that inherits it: report it once.
        raise JobSpecErrors(source, dict.fromkeys(problems))
    return JobsFile(specs, notifiers)


def _read_notifiers(tables: object, header_lines: list[int]
                    ) -> tuple[list[NotifierSpec], list[Problem]]:
    """The file's notifiers, and the problems of its ``[[notifier]]`` tables."""
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        return [], [Problem("'notifier' must be an array of tables: write [[notifier]], "
                            "not [notifier]")]
    trusted = len(header_lines) == len(tables)
    notifiers: list[NotifierSpec] = []
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    for index, table in enumerate(tables, 1):
        line = header_lines[index - 1] if trusted else None
        name = table.get("name")
        where = f"notifier {name!r}" if isinstance(name, str) else f"notifier #{index}"
        if isinstance(name, str) and name in seen:
            problems.append(Problem(f"{where}: duplicate name: notifier #{seen[name]} "
                                    f"is also called {name!r}", field="name", line=line))
            continue
        if isinstance(name, str):
            seen[name] = index
        if "source" in table:
            problems.append(Problem(f"{where}: 'source' is set by distcron (the file that "
                                    "declares it)", field="source", line=line))
            continue
        try:
            spec = NotifierSpec.model_validate(table)
        except ValidationError as exc:
            for error in exc.errors():
                key = ".".join(str(part) for part in error["loc"]) or "notifier"
                message = str(error["msg"]).removeprefix("Value error, ")
                if error["type"] == "extra_forbidden":
                    message = "unknown key; a notifier has 'name' and 'url'"
                problems.append(Problem(f"{where}: {message}", field=key, line=line))
            continue
        notifiers.append(spec)
    return notifiers, problems


def _read_job(table: Mapping[str, Any], index: int, defaults: _Defaults, now: datetime
              ) -> tuple[JobSpec | None, list[Problem]]:
    """The job of one [[job]] table (None when invalid), and its problems."""
    name = table.get("name")
    job = name if isinstance(name, str) else None
    merged, inherited = _with_defaults(defaults.values, table)
    problems = [Problem(message, job=job, index=index, field=key)
                for key, message in SET_BY_DISTCRON.items() if key in table]
    try:
        spec = validate_spec(merged, now)
    except ValidationError as exc:
        return None, problems + problems_from_validation_error(
            exc, AUTHOR_KEYS, job=job, index=index, inherited=inherited)
    return spec, problems


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
        if key in SET_BY_DISTCRON:
            message = SET_BY_DISTCRON[key]
        elif key in JobSpec.model_fields:
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


def read_toml(text: str, source: str) -> dict[str, Any]:
    """The TOML document, or JobSpecErrors naming ``source`` and the line."""
    too_deep = Problem(f"arrays or tables are nested more than {MAX_DEPTH} levels deep; "
                       "a jobs file needs a few")
    try:
        document = tomli.loads(text)
    except tomli.TOMLDecodeError as exc:
        # tomli's message ends with "(at line L, column C)".
        at = _TOML_AT.search(str(exc))
        line = int(at.group(1)) if at else None
        raise JobSpecErrors(source, [Problem(f"invalid TOML: {exc}", line=line)]) from None
    except RecursionError:
        raise JobSpecErrors(source, [too_deep]) from None  # tomli recurses per level
    if _depth(document) > MAX_DEPTH:
        raise JobSpecErrors(source, [too_deep])
    return document


def _depth(value: object) -> int:
    """How deeply arrays and tables nest in ``value`` (iteratively: it may be deep)."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if isinstance(item, dict):
            stack += [(child, depth + 1) for child in item.values()]
        elif isinstance(item, list):
            stack += [(child, depth + 1) for child in item]
    return deepest


# A job's lines: from its header to the next job's (or to the [defaults] header
# after it); the last region is the [defaults] table's.
_Region = tuple[int, int]
_TOML_AT = re.compile(r"\(at line (\d+), column \d+\)")
_KEY_START = re.compile(r"\s*(?:([A-Za-z0-9_-]+)|\"([^\"\\]*)\"|'([^']*)')\s*[=.]")


def _regions(lines: list[str], job_lines: list[int], defaults_line: int | None
             ) -> list[_Region | None]:
    starts = sorted([*job_lines, *([defaults_line] if defaults_line else [])])
    ends = {start: end - 1 for start, end in zip(starts, [*starts[1:], len(lines) + 1],
                                                 strict=False)}
    regions: list[_Region | None] = [(line, ends[line]) for line in job_lines]
    regions.append((defaults_line, ends[defaults_line]) if defaults_line else None)
    return regions


def _key_line(lines: list[str], region: _Region | None, field: str | None) -> int | None:
    """The line where ``field``'s key is set in ``region`` (``key = …`` before the
    table's first sub-table, or its own ``[job.key]``); else the region's header
    line. Trusted only when found once: a line of a multi-line string can look
    like a key."""
    if region is None:
        return None
    first, last = region
    key = re.match(r"[^.\[]*", field or "")
    if not key or not key.group():
        return first
    sub_table = re.compile(rf"\s*\[\s*[A-Za-z0-9_-]+\s*\.\s*(?:{re.escape(key.group())}|"
                           rf"\"{re.escape(key.group())}\")\s*\].*")
    found, own_keys = [], True
    for n in range(first + 1, last + 1):
        line = lines[n - 1]
        if sub_table.fullmatch(line):
            found.append(n)
        if line.lstrip().startswith("["):
            own_keys = False
        elif own_keys and (m := _KEY_START.match(line)) and key.group() in m.groups():
            found.append(n)
    return found[0] if len(found) == 1 else first


def _top_level_line(lines: list[str], key: str) -> int | None:
    header = re.compile(rf"\s*\[\[?\s*{re.escape(key)}\s*[\].].*")
    top = True  # before the first table header
    for n, line in enumerate(lines, 1):
        if header.fullmatch(line):
            return n
        if line.lstrip().startswith("["):
            top = False
        elif top and (m := _KEY_START.match(line)) and key in m.groups():
            return n
    return None


@dataclass(frozen=True)
class _Places:
    """Where the keys of a file's jobs and [defaults] are, to point at a problem's line."""

    lines: list[str]
    regions: list[_Region | None]  # per job in file order, then [defaults]
    trusted: bool  # whether the regions of the jobs were found

    def locate(self, problem: Problem, index: int) -> Problem:
        """``problem`` (of the job at 1-based ``index``, or 0: of [defaults]) with
        the line of its key, else of its table's header."""
        if problem.in_defaults or index == 0:
            region = self.regions[-1]
        else:
            region = self.regions[index - 1] if self.trusted else None
        return replace(problem, line=_key_line(self.lines, region, problem.field))


def _header_lines(lines: list[str], header: re.Pattern[str]) -> list[int]:
    return [n for n, line in enumerate(lines, 1) if header.fullmatch(line)]
