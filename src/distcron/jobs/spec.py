"""The job spec: what to run, when, and under which policies.

A :class:`JobSpec` is validated once, where it enters (a jobs file, the API),
and is then stored as JSON and read back by every replica; ``to_json`` writes
one canonical form so that equal specs are equal bytes and the fingerprint of
an unchanged job never changes.
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
import zoneinfo
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Self
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from distcron.cron import NoSlotError, parse
from distcron.durations import parse_duration
from distcron.errors import KeyProblems
from distcron.jobs.notifier import DEFAULT_NOTIFY_ON, NotifyState, check_notifier_name
from distcron.jobs.problems import (
    JobSpecErrors,
    Problem,
    problems_from_validation_error,
    suggest,
)

Concurrency = Literal["forbid", "allow", "replace", "queue"]
Catchup = Literal["none", "last", "all"]
Executor = Literal["local", "agent", "http", "slurm"]

DEFAULT_STARTING_DEADLINE = 3600.0
DEFAULT_RETRY_BACKOFF = 10.0
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")

# The name is part of store keys and of launch ids "<job>@<slot>", hence no "@",
# "/" or spaces.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", re.ASCII)
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*", re.ASCII)
# Worker tags travel as "--tags a,b", so no commas or spaces.
_TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:=/-]{0,63}", re.ASCII)
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", re.ASCII)
_RESERVED_ENV_PREFIX = "DISTCRON_"
_SLURM_KEYS = ("partition", "cpus", "memory", "time_limit", "account", "qos", "sbatch_options")
_SLURM_NAME = re.compile(r"[A-Za-z0-9._-]{1,128}", re.ASCII)
_SLURM_MEMORY = re.compile(r"[0-9]{1,12}[KMGT]?", re.ASCII)
_SBATCH_SET_BY_DISTCRON = frozenset({
    "--job-name", "--output", "--error", "--export", "--chdir", "--comment", "--parsable",
    "--open-mode", "--wrap", "--array", "--export-file", "--input"})
_SBATCH_SHORT_SET_BY_DISTCRON = ("-J", "-o", "-e", "-D", "-a", "-i")


def _seconds(value: object) -> float:
    """A duration in seconds from a number of seconds or a string like ``1h30m``."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f'expected a duration such as 90, "90s" or "1h30m", got {value!r}')
    try:
        seconds = parse_duration(value) if isinstance(value, str) else float(value)
    except OverflowError:
        seconds = math.inf
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"must be a finite duration of more than zero, got {value!r}")
    return seconds


Duration = Annotated[float, PlainValidator(_seconds, json_schema_input_type=float | str)]


@functools.cache
def _known_zones() -> frozenset[str]:
    # "localtime" is a file in the zoneinfo directory, not a zone: it would make
    # the schedule depend on each machine's setting, and replicas must agree.
    return frozenset(zoneinfo.available_timezones() - {"localtime"})


def check_timezone(name: str) -> str:
    """``name`` if it is an IANA time zone; ValueError suggesting the closest one if not."""
    zones = _known_zones()
    if name not in zones:
        raise ValueError(f"unknown time zone {name!r}{suggest(name, zones)}")
    return name


def _no_nul(text: str, what: str) -> str:
    # execve cannot pass a NUL byte; better to say so now than fail at launch.
    if "\0" in text:
        raise ValueError(f"{what} must not contain a NUL character")
    return text


# Linux refuses (E2BIG) a single argument or environment string longer than
# MAX_ARG_STRLEN (32 pages, with its NUL), and all of them together past
# ARG_MAX; what distcron adds (its own variables, the shell) needs some room.
MAX_ARGUMENT_BYTES = 32 * 4096 - 1
MAX_ARGUMENTS_BYTES = 1024 * 1024
MAX_BODY_BYTES = 1024 * 1024  # a spec is one store value: etcd takes 1.5 MiB


def _edge_now(info: ValidationInfo) -> datetime | None:
    """The instant of an edge validation (a file, the API), or None when a stored
    spec is read back: what is checked only at the edge (a slot to come, sizes)
    must not make a stored job unreadable; the leader quarantines it instead."""
    now = info.context.get("now") if isinstance(info.context, Mapping) else None
    return now if isinstance(now, datetime) else None


def _fits_an_argument(text: str, what: str, info: ValidationInfo) -> str:
    size = len(text.encode())
    if size > MAX_ARGUMENT_BYTES and _edge_now(info) is not None:
        raise ValueError(f"{what} is {size} bytes; the kernel takes at most "
                         f"{MAX_ARGUMENT_BYTES} in one argument (E2BIG): put it in a script")
    return text


class JobSpec(BaseModel):
    """One job. Durations are float seconds; see docs/jobs-file.md for every key."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: StrictStr
    description: StrictStr | None = None
    owner: StrictStr | None = None
    # timezone comes before schedule: the schedule check needs the validated zone.
    timezone: StrictStr = "UTC"
    schedule: StrictStr
    executor: Executor = "local"
    command: StrictStr | None = None
    argv: tuple[StrictStr, ...] | None = None
    url: StrictStr | None = None
    method: StrictStr | None = None
    headers: Mapping[StrictStr, StrictStr] | None = None
    body: StrictStr | None = None
    env: Mapping[StrictStr, StrictStr] = Field(default_factory=dict)
    workdir: StrictStr | None = None
    timeout: Duration | None = None
    concurrency: Concurrency = "forbid"
    catchup: Catchup = "last"
    starting_deadline: Duration = DEFAULT_STARTING_DEADLINE
    idempotent: StrictBool = False
    retries: StrictInt = Field(default=0, ge=0)
    retry_backoff: Duration = DEFAULT_RETRY_BACKOFF
    tags: tuple[StrictStr, ...] = ()
    paused: StrictBool = False
    # Who is told, and about which ends (see jobs/notifier.py).
    notify: tuple[StrictStr, ...] = ()
    notify_on: tuple[NotifyState, ...] = DEFAULT_NOTIFY_ON
    notify_output: StrictBool = False  # send the end of the run's output with it
    # Where the job came from: a config file's absolute path, or "api" (see
    # jobs/jobset.py). Set by distcron, never by the spec's author.
    source: StrictStr | None = None
    # executor "slurm" only (docs/slurm.md); time_limit defaults to timeout.
    partition: StrictStr | None = None
    cpus: StrictInt | None = Field(default=None, ge=1)
    memory: StrictStr | None = None
    time_limit: Duration | None = None
    account: StrictStr | None = None
    qos: StrictStr | None = None
    sbatch_options: tuple[StrictStr, ...] | None = None

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _NAME.fullmatch(value):
            raise ValueError(
                f"{value!r} is not a valid name: use 1-128 letters, digits, '.', '_' or '-', "
                "starting with a letter or digit (it is part of launch ids <job>@<slot>)"
            )
        return value

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        return check_timezone(value)

    @field_validator("schedule")
    @classmethod
    def _check_schedule(cls, value: str, info: ValidationInfo) -> str:
        # Whether an expression is valid does not depend on the name (which seeds
        # H and ?) or the zone, so when those are bad (and reported on their own)
        # the syntax is still checked, with stand-ins.
        name = info.data.get("name", "job")
        schedule = parse(value, tz=info.data.get("timezone", "UTC"), job=name)
        # At the edge (a file, the API) a schedule must have a slot to come, or the
        # job could never run; stored specs are read back without this check.
        now = _edge_now(info)
        if now is not None:
            try:
                schedule.next(now)
            except NoSlotError as exc:
                raise ValueError(f"no more slots: {exc}") from None
        return value

    @field_validator("command", "workdir")
    @classmethod
    def _check_no_nul(cls, value: str | None, info: ValidationInfo) -> str | None:
        return None if value is None else _no_nul(value, str(info.field_name))

    @field_validator("command")
    @classmethod
    def _check_command(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be empty")
        return None if value is None else _fits_an_argument(value, "the command", info)

    @field_validator("body")
    @classmethod
    def _check_body(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and len(value.encode()) > MAX_BODY_BYTES and _edge_now(info):
            raise ValueError(f"is {len(value.encode())} bytes; at most {MAX_BODY_BYTES}")
        return value

    @field_validator("argv")
    @classmethod
    def _check_argv(cls, value: tuple[str, ...] | None, info: ValidationInfo
                    ) -> tuple[str, ...] | None:
        if value is None:
            return None
        if not value or not value[0]:
            raise ValueError("must be a non-empty list whose first item names the program")
        for n, arg in enumerate(value):
            _fits_an_argument(_no_nul(arg, "an argument"), f"argument {n}", info)
        return value

    @field_validator("workdir")
    @classmethod
    def _check_workdir(cls, value: str | None) -> str | None:
        # Relative to what? Workers start in different directories.
        if value is not None and not value.startswith("/"):
            raise ValueError(f"must be an absolute path, got {value!r}")
        return value

    @field_validator("env")
    @classmethod
    def _check_env(cls, value: Mapping[str, str], info: ValidationInfo) -> Mapping[str, str]:
        for key, text in value.items():
            if not _ENV_NAME.fullmatch(key):
                raise ValueError(f"{key!r} is not a valid environment variable name")
            if key.startswith(_RESERVED_ENV_PREFIX):
                raise ValueError(f"{key!r}: names starting with DISTCRON_ are set by distcron")
            _fits_an_argument(_no_nul(text, f"the value of {key}"), f"the value of {key}", info)
        return dict(sorted(value.items()))  # in one order, so that equal specs give equal JSON

    @field_validator("notify", "notify_on")
    @classmethod
    def _check_listed_once(cls, value: tuple[str, ...], info: ValidationInfo
                           ) -> tuple[str, ...]:
        for i, item in enumerate(value):
            if info.field_name == "notify":
                check_notifier_name(item)
            if item in value[:i]:
                raise ValueError(f"{item!r} is listed twice")
        return value

    @field_validator("tags")
    @classmethod
    def _check_tags(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for i, tag in enumerate(value):
            if not _TAG.fullmatch(tag):
                raise ValueError(
                    f"{tag!r} is not a valid tag: use 1-64 letters, digits and . _ : = / -, "
                    "starting with a letter or digit"
                )
            if tag in value[:i]:
                raise ValueError(f"tag {tag!r} is listed twice")
        return value

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"must be an http:// or https:// URL with a host, got {value!r}")
        if any(c.isspace() or ord(c) < 32 for c in value):
            raise ValueError("must not contain spaces or control characters")
        return value

    @field_validator("method")
    @classmethod
    def _check_method(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if value.upper() not in HTTP_METHODS:
            raise ValueError(f"must be one of {', '.join(HTTP_METHODS)}, got {value!r}")
        return value.upper()

    @field_validator("headers")
    @classmethod
    def _check_headers(cls, value: Mapping[str, str] | None) -> Mapping[str, str] | None:
        for key, text in (value or {}).items():
            if not _HEADER_NAME.fullmatch(key):
                raise ValueError(f"{key!r} is not a valid header name")
            if any(c in text for c in "\r\n\0"):
                raise ValueError(f"the value of {key!r} must not contain CR, LF or NUL")
        return None if value is None else dict(sorted(value.items()))  # as env

    @model_validator(mode="before")
    @classmethod
    def _default_http_method(cls, data: Any) -> Any:
        # Defaulted here, not on the field, so that "method is only for http"
        # can tell a method someone wrote from one nobody did.
        if isinstance(data, Mapping) and data.get("executor") == "http" and "method" not in data:
            return {**data, "method": "POST"}
        return data

    @model_validator(mode="after")
    def _check_executor_keys(self, info: ValidationInfo) -> Self:
        problems: list[tuple[str, str]] = []
        if self.executor == "http":
            if self.url is None:
                problems.append(("url", "is required with executor 'http'"))
            for key in ("command", "argv", "workdir"):
                if getattr(self, key) is not None:
                    problems.append((key, "is not used by executor 'http'; remove it"))
            if self.env:
                problems.append(("env", "is not used by executor 'http'; remove it"))
        else:
            if (self.command is None) == (self.argv is None):
                problems.append(("command", "set exactly one of 'command' or 'argv'"))
            for key in ("url", "method", "headers", "body"):
                if getattr(self, key) is not None:
                    problems.append(
                        (key, f"is only for executor 'http' (this job's is {self.executor!r})")
                    )
        arguments = sum(len(arg.encode()) + 1 for arg in (*(self.argv or ()), self.command or ""))
        arguments += sum(len(f"{k}={v}".encode()) + 1 for k, v in self.env.items())
        if arguments > MAX_ARGUMENTS_BYTES and _edge_now(info) is not None:
            problems.append(("env" if self.env else "argv" if self.argv else "command",
                             f"the command and its environment come to {arguments} bytes; "
                             f"the kernel refuses more than about {MAX_ARGUMENTS_BYTES} (E2BIG)"))
        if problems:
            raise KeyProblems(problems)
        return self

    # -- executor "slurm" ---------------------------------------------------------------

    @field_validator("partition", "account", "qos")
    @classmethod
    def _check_slurm_name(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and not _SLURM_NAME.fullmatch(value):
            raise ValueError(f"{value!r} is not a Slurm {info.field_name} name: use letters, "
                             "digits, '.', '_' or '-'")
        return value

    @field_validator("memory")
    @classmethod
    def _check_slurm_memory(cls, value: str | None) -> str | None:
        if value is not None and not _SLURM_MEMORY.fullmatch(value):
            raise ValueError(f"expected megabytes or a size such as '512M' or '4G' "
                             f"(sbatch --mem), got {value!r}")
        return value

    @field_validator("sbatch_options")
    @classmethod
    def _check_sbatch_options(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        for option in value or ():
            if not option.startswith("-"):
                raise ValueError(f"{option!r} is not an option: write each as '--name=value'")
            _no_nul(option, "an option")
            name = option.split("=", 1)[0]
            if name in _SBATCH_SET_BY_DISTCRON or any(
                    option.startswith(short) for short in _SBATCH_SHORT_SET_BY_DISTCRON):
                raise ValueError(f"{name!r} is set by distcron (the job's name, output, "
                                 "environment and directory are how it finds a launch)")
        return value

    @model_validator(mode="after")
    def _check_slurm_keys(self) -> Self:
        if self.executor != "slurm":
            problems = [(key, f"is only for executor 'slurm' (this job's is "
                              f"{self.executor!r})")
                        for key in _SLURM_KEYS if getattr(self, key) is not None]
            if problems:
                raise KeyProblems(problems)
        return self

    def to_json(self) -> str:
        """Canonical JSON (every field, in declared order, no spaces): equal specs
        give equal text."""
        return self.model_dump_json()

    @classmethod
    def from_json(cls, text: str | bytes, source: str = "<json>") -> JobSpec:
        """The spec that ``to_json`` wrote; raises JobSpecErrors if it is not valid."""
        try:
            return cls.model_validate_json(text)
        except ValidationError as exc:
            problems = problems_from_validation_error(exc, JobSpec.model_fields)
            raise JobSpecErrors(source, problems) from None

    def fingerprint(self) -> str:
        """SHA-256 (hex) of the canonical JSON: changes exactly when the spec does."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()

    def __hash__(self) -> int:
        # pydantic's frozen hash would hash the env/headers dicts and fail.
        return hash(self.fingerprint())


# Keys distcron sets itself: a spec that says them is refused.
SET_BY_DISTCRON = {"source": "is set by distcron (the file or the API a job came from); remove it"}
# What a spec's author may write, for "did you mean" suggestions.
AUTHOR_KEYS = tuple(key for key in JobSpec.model_fields if key not in SET_BY_DISTCRON)


def build_spec(data: Mapping[str, Any], source: str = "<spec>",
               now: datetime | None = None) -> JobSpec:
    """Validate one job given as a mapping of keys (as in a [[job]] table).

    Its schedule must have a slot after ``now`` (default: the wall clock).
    Raises JobSpecErrors listing every problem found, each naming its field."""
    name = data.get("name")
    job = name if isinstance(name, str) else None
    problems = [Problem(message, job=job, field=key)
                for key, message in SET_BY_DISTCRON.items() if key in data]
    try:
        spec = validate_spec(data, now)
    except ValidationError as exc:
        problems += problems_from_validation_error(exc, AUTHOR_KEYS, job=job)
    if problems:
        raise JobSpecErrors(source, problems)
    return spec


def validate_spec(data: Mapping[str, Any], now: datetime | None = None) -> JobSpec:
    """``JobSpec.model_validate`` as at the edge: the schedule must have a slot
    after ``now`` (default: the wall clock). Raises pydantic's ValidationError."""
    return JobSpec.model_validate(data, context={"now": now or datetime.now(UTC)})
