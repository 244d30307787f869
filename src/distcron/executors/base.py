"""The executor interface: start, query, wait for and stop a launch by its id.

A replica asks an executor to run a launch only after the launch intent is
committed in the store (promise 2). The executor's half of "at most one launch
per slot" (promise 1) is that ``start`` is idempotent by launch id, across calls,
tasks, executor instances and replica restarts: a second ``start`` with an id the
executor already knows starts nothing and returns what became of the first.

On failure:

- ``start`` raises :class:`~distcron.errors.ExecutorError` only when the executor
  itself could not start the run (no run directory, no supervisor) and nothing
  was started, so starting again is safe. A job that cannot be executed (command
  or workdir missing) is not an error of the executor: it is a run that ended
  ``FAILED``, with the reason.
- When an executor learns that it lost track of a run it started (its supervisor
  vanished: machine reboot, someone killed it), it says ``LOST``: the run began,
  and its outcome will never be known. A replica must not treat that as "not
  started" (promise 4: fail closed).
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar

from distcron.errors import ExecutorError
from distcron.timefmt import utc_iso

DEFAULT_OUTPUT_LIMIT = 64 * 1024



def _parse_time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


@dataclass(frozen=True)
class HttpCall:
    """The HTTP request an ``http`` job makes (the job's ``url``, ``method``,
    ``headers`` and ``body``)."""

    url: str
    method: str = "POST"
    headers: Mapping[str, str] = field(default_factory=dict)
    body: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"url": self.url, "method": self.method, "headers": dict(self.headers),
                "body": self.body}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HttpCall:
        return cls(url=data["url"], method=data["method"], headers=dict(data["headers"]),
                   body=data["body"])


@dataclass(frozen=True)
class SlurmOptions:
    """What a ``slurm`` job asks of Slurm (the job's ``partition``, ``cpus``,
    ``memory``, ``time_limit``, ``account``, ``qos`` and ``sbatch_options``).
    ``starting_deadline`` (seconds after the slot) lets Slurm drop a launch that
    is still pending by then."""

    partition: str | None = None
    cpus: int | None = None
    memory: str | None = None
    time_limit: float | None = None
    account: str | None = None
    qos: str | None = None
    sbatch_options: tuple[str, ...] = ()
    starting_deadline: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"partition": self.partition, "cpus": self.cpus, "memory": self.memory,
                "time_limit": self.time_limit, "account": self.account, "qos": self.qos,
                "sbatch_options": list(self.sbatch_options),
                "starting_deadline": self.starting_deadline}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SlurmOptions:
        return cls(partition=data["partition"], cpus=data["cpus"], memory=data["memory"],
                   time_limit=data["time_limit"], account=data["account"], qos=data["qos"],
                   sbatch_options=tuple(data["sbatch_options"]),
                   starting_deadline=data["starting_deadline"])


@dataclass(frozen=True)
class LaunchRequest:
    """What to run for one launch.

    Exactly one of ``command`` (run by ``/bin/sh -c``), ``argv`` (executed
    directly, ``argv[0]`` looked up in the job's ``PATH``) and ``http`` (the
    request an HTTP executor makes) is set. ``slot`` is the scheduled instant
    (aware), ``None`` for a run started by hand. ``timeout`` is in seconds from
    the job's start; ``output_limit`` is how many trailing bytes of output are
    kept (for an HTTP launch: how many leading bytes of the response body).
    """

    launch_id: str
    job: str
    slot: datetime | None
    fence: int
    command: str | None = None
    argv: tuple[str, ...] | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    workdir: str | None = None
    timeout: float | None = None
    output_limit: int = DEFAULT_OUTPUT_LIMIT
    http: HttpCall | None = None
    # What a receiver deduplicates on (an HTTP launch's Idempotency-Key): the
    # launch id, except that a relaunch of a run whose fate was unknown reuses
    # the key of the attempt it repeats.
    idempotency_key: str | None = None
    # The identity of the store the fence is a revision of (``meta/identity``):
    # two incarnations of a store count fences alike, so a fence alone compares
    # equal across them; "" in requests written before it existed.
    store_id: str = ""
    # What a Slurm executor asks of Slurm for the launch (None: its defaults).
    slurm: SlurmOptions | None = None

    def __post_init__(self) -> None:
        if not self.launch_id:
            raise ValueError("a launch request needs a launch id")
        if self.http is not None:
            if self.command is not None or self.argv is not None:
                raise ValueError(
                    f"launch {self.launch_id!r}: an http launch has no command or argv")
        elif (self.command is None) == (self.argv is None):
            raise ValueError(f"launch {self.launch_id!r}: set exactly one of command and argv")
        if self.argv is not None and not self.argv:
            raise ValueError(f"launch {self.launch_id!r}: argv is empty")
        if self.slot is not None and self.slot.tzinfo is None:
            raise ValueError(f"launch {self.launch_id!r}: slot must be timezone-aware")
        if self.timeout is not None and self.timeout <= 0:
            raise ValueError(f"launch {self.launch_id!r}: timeout must be positive")
        if self.output_limit <= 0:
            raise ValueError(f"launch {self.launch_id!r}: output_limit must be positive")

    def launch_env(self) -> dict[str, str]:
        """The variables every launched command finds (DESIGN: interfaces)."""
        return {
            "DISTCRON_JOB": self.job,
            "DISTCRON_LAUNCH_ID": self.launch_id,
            "DISTCRON_SLOT": "" if self.slot is None else utc_iso(self.slot),
            "DISTCRON_FENCE": str(self.fence),
            "DISTCRON_STORE_ID": self.store_id,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "launch_id": self.launch_id, "job": self.job,
            "slot": None if self.slot is None else self.slot.astimezone(UTC).isoformat(),
            "fence": self.fence, "command": self.command,
            "argv": None if self.argv is None else list(self.argv),
            "env": dict(self.env), "workdir": self.workdir, "timeout": self.timeout,
            "output_limit": self.output_limit,
            "http": None if self.http is None else self.http.to_dict(),
            "idempotency_key": self.idempotency_key, "store_id": self.store_id,
            "slurm": None if self.slurm is None else self.slurm.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LaunchRequest:
        argv = data["argv"]
        # Requests written before "http" existed (run directories) have no key.
        http = data.get("http")
        slurm = data.get("slurm")
        return cls(
            launch_id=data["launch_id"], job=data["job"], slot=_parse_time(data["slot"]),
            fence=data["fence"], command=data["command"],
            argv=None if argv is None else tuple(argv), env=dict(data["env"]),
            workdir=data["workdir"], timeout=data["timeout"],
            output_limit=data["output_limit"],
            http=None if http is None else HttpCall.from_dict(http),
            idempotency_key=data.get("idempotency_key"),
            store_id=data.get("store_id", ""),
            slurm=None if slurm is None else SlurmOptions.from_dict(slurm),
        )


class RunState(StrEnum):
    NOT_FOUND = "not_found"  # this executor never started it
    STAGED = "staged"  # prepared to start at once on release; nothing of the job has run
    # Handed to a batch scheduler (Slurm) that has not started it yet, waiting
    # for resources or priority (the reason says which); it will start by itself.
    PENDING = "pending"
    RUNNING = "running"  # started (or being started) and not ended
    SUCCEEDED = "succeeded"  # exit code 0
    FAILED = "failed"  # non-zero exit, killed by a signal, or could not be executed
    TIMED_OUT = "timed_out"  # killed (its whole process group) at its timeout
    STOPPED = "stopped"  # killed on request (``stop``)
    LOST = "lost"  # started, then its supervisor vanished: the outcome is unknown
    MISSED = "missed"  # still pending in a batch scheduler at its starting deadline: dropped

    @property
    def final(self) -> bool:
        """Nothing more will ever be learned about the run: ``wait`` returns it."""
        return self not in (RunState.NOT_FOUND, RunState.STAGED, RunState.PENDING,
                            RunState.RUNNING)


@dataclass(frozen=True)
class RunStatus:
    """What an executor knows about one run.

    ``exit_code`` is set when the job exited by itself, ``signal`` when a signal
    killed it; both are ``None`` while it runs, when it never ran, and when it is
    ``LOST``. ``reason`` says in words why a run is not a plain exit.
    """

    launch_id: str
    state: RunState
    pid: int | None = None
    exit_code: int | None = None
    signal: int | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    reason: str = ""

    @classmethod
    def failed(cls, launch_id: str, reason: str) -> RunStatus:
        """A run that failed before (or without) running anything."""
        return cls(launch_id, RunState.FAILED, reason=reason)

    def to_dict(self) -> dict[str, Any]:
        return {
            "launch_id": self.launch_id, "state": self.state.value, "pid": self.pid,
            "exit_code": self.exit_code, "signal": self.signal,
            "started_at": None if self.started_at is None else self.started_at.isoformat(),
            "ended_at": None if self.ended_at is None else self.ended_at.isoformat(),
            "reason": self.reason,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunStatus:
        return cls(
            launch_id=data["launch_id"], state=RunState(data["state"]), pid=data["pid"],
            exit_code=data["exit_code"], signal=data["signal"],
            started_at=_parse_time(data["started_at"]), ended_at=_parse_time(data["ended_at"]),
            reason=data["reason"],
        )


class Executor(abc.ABC):
    """Starts, queries and stops launches by id. Every method is safe to call from
    a replica that did not start the run (it restarted, or took over).

    ``location`` says where the executor keeps its runs (for the local executor:
    host and run directory); a new leader asks its own executor about a run only
    when the locations match. ``worker_name`` is what runs record as their worker.
    """

    name: ClassVar[str]
    # Whether stage() prepares launches ahead (else release() simply starts them).
    stages: ClassVar[bool] = False
    # Whether start() paces itself (Slurm: its own submission limit, and it waits
    # out a controller that does not answer), so that a replica's limit on
    # starts at once must not hold other executors' starts behind it.
    paces_starts: ClassVar[bool] = False
    location: str | None = None
    worker_name: str | None = None

    @abc.abstractmethod
    async def start(self, request: LaunchRequest) -> RunStatus:
        """Start the launch, once. A second call with the same ``launch_id`` starts
        nothing and returns the run's current status. Returns ``RUNNING`` (with
        ``pid`` and ``started_at``), or a final state when the job could not be
        executed or already ended. Raises ExecutorError when nothing was started
        (calling again is then safe)."""

    @abc.abstractmethod
    async def query(self, launch_id: str) -> RunStatus:
        """The run's status now; ``NOT_FOUND`` when this executor never started it."""

    @abc.abstractmethod
    async def wait(self, launch_id: str) -> RunStatus:
        """Return once the run is final (or at once if ``NOT_FOUND``). Works for runs
        started by another process, e.g. before a restart. Cancellable."""

    @abc.abstractmethod
    async def stop(self, launch_id: str, grace: float | None = None) -> RunStatus:
        """Stop a running run: SIGTERM to its process group, SIGKILL after ``grace``
        seconds (``None``: the executor's default). Returns once it is final.
        Idempotent: a run that is not running is left alone and its status
        returned."""

    @abc.abstractmethod
    async def output(self, launch_id: str) -> bytes:
        """The last ``output_limit`` bytes of the run's stdout and stderr, interleaved
        in the order they were written; ``b""`` for a run this executor does not know."""

    async def stage(self, requests: Sequence[LaunchRequest], release_by: datetime
                    ) -> list[RunStatus | ExecutorError]:
        """Prepare each launch so that :meth:`release` starts it at once; nothing of
        the job runs. Idempotent by launch id, like ``start``. A launch still
        unreleased at ``release_by`` lets itself go (its leader died or was
        paused) and reads ``NOT_FOUND`` afterwards, so a later start takes it
        over. Per launch: ``STAGED``, or the ExecutorError that kept it from
        being staged (nothing of it exists then). An executor that does not
        stage stages nothing: ``NOT_FOUND``."""
        return [RunStatus(request.launch_id, RunState.NOT_FOUND) for request in requests]

    async def release(self, requests: Sequence[LaunchRequest]
                      ) -> list[RunStatus | ExecutorError]:
        """Start these launches now: a staged one at once, any other as ``start``
        would; per launch, what ``start`` returns or the ExecutorError it raises.
        Works for launches staged by another executor on the same runs."""
        results: list[RunStatus | ExecutorError] = []
        for request in requests:
            try:
                results.append(await self.start(request))
            except ExecutorError as exc:
                results.append(exc)
        return results

    async def unstage(self, launch_ids: Sequence[str]) -> None:
        """Let staged launches go without running anything (their job was edited,
        paused or removed before the slot); they read ``NOT_FOUND`` afterwards."""
        return None

    async def prune(self, before: datetime) -> list[str]:
        """Forget ended runs whose end is older than ``before``; returns their ids.
        Executors that keep nothing about ended runs have nothing to prune."""
        return []

    @abc.abstractmethod
    async def close(self) -> None:
        """Release what the executor holds. Runs are not stopped: they go on, and a
        later executor adopts them."""
