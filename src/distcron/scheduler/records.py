"""Launch records: what the store says happened to each slot.

A launch id is ``<job>@<slot>`` with the slot in UTC ISO-8601 (``Z``). A run
started by hand gets ``<job>@manual-<time>-<nonce>``, which can never equal a
slot. Every slot of a job is covered by exactly one record: a launched slot by
its own record, and a run of consecutive slots skipped or missed for one reason
by one record that spans them (``slot`` … ``until``, ``count`` slots), so that a
job paused for a day at one run per second does not write 86,400 records.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from distcron.timefmt import utc_iso


class LaunchState(StrEnum):
    LAUNCHING = "launching"  # intent committed, executor not yet confirmed
    RUNNING = "running"
    # Waiting: for the live run to end (concurrency = queue), for a worker, or,
    # already submitted, in a batch scheduler (Slurm) for resources: see
    # ``LaunchRecord.submitted``.
    QUEUED = "queued"
    RETRYING = "retrying"  # failed, waiting for its next attempt
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    STOPPED = "stopped"  # stopped on purpose (replaced by a newer run)
    SKIPPED = "skipped"  # overlap policy, or the job was paused
    MISSED = "missed"  # past its starting deadline, or superseded by catch-up
    UNKNOWN = "unknown"  # takeover could not learn its fate (fail closed)
    LOST = "lost"  # the worker running it vanished

    @property
    def live(self) -> bool:
        """The slot is not finished: it counts as running for overlap policies."""
        return self in _LIVE

    @property
    def launched(self) -> bool:
        """An executor was (or may have been) asked to run it, whatever its cause
        (a queued record may have been: see ``LaunchRecord.launched``)."""
        return self not in _NEVER_LAUNCHED


_LIVE = frozenset({LaunchState.LAUNCHING, LaunchState.RUNNING, LaunchState.QUEUED,
                   LaunchState.RETRYING})
_NEVER_LAUNCHED = frozenset({LaunchState.QUEUED, LaunchState.SKIPPED, LaunchState.MISSED})
_SUBMITTED = frozenset({LaunchState.LAUNCHING, LaunchState.RUNNING})


class Cause(StrEnum):
    """Why a slot waits, or was skipped or missed: for programs (the metrics, the
    core's own rules), beside ``reason``, which says it in words for people."""

    WAITING_FOR_WORKER = "waiting_for_worker"  # queued: no eligible worker has a free slot
    WAITING_FOR_RUN = "waiting_for_run"  # queued behind a live run (concurrency = queue)
    # queued: submitted to a batch scheduler (Slurm) that has not started it yet;
    # the reason gives the scheduler's own (resources, priority). Unlike the
    # other queued causes, it is launched: live in its executor.
    WAITING_FOR_RESOURCES = "waiting_for_resources"
    PAUSED = "paused"  # skipped: the job is paused (stopped: queued for resources then)
    OVERLAP = "overlap"  # skipped: a run of the job is live (forbid, queue)
    REPLACED = "replaced"  # skipped or stopped: a newer run replaced it
    JOB_REMOVED = "job_removed"  # skipped or stopped: the job was removed while it waited
    EDITED = "edited"  # skipped: the job's schedule changed after its slot was staged
    DEADLINE = "deadline"  # missed: past its starting deadline
    NO_CATCHUP = "no_catchup"  # missed: fell due while no leader ran (catch-up none)
    SUPERSEDED = "superseded"  # missed: a later slot runs instead (catch-up last)
    NO_WORKER_IN_TIME = "no_worker_in_time"  # missed: no worker took it before its deadline
    RESTORED = "restored"  # missed: fell due before the store was restored from a copy


class LaunchKind(StrEnum):
    SCHEDULED = "scheduled"
    MANUAL = "manual"
    BACKFILL = "backfill"  # a past slot launched on request (``jobs backfill``)


# Earlier attempts kept on a record: the newest, when a job retries more often.
MAX_ATTEMPTS_KEPT = 20


class Attempt(BaseModel):
    """An earlier attempt of a launch that ran again (retried, or relaunched at
    takeover): what it was, kept on the record beside the current attempt. Its
    output is stored under its own run id (``output/<run id>``)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    attempt: int
    run_id: str
    state: LaunchState
    reason: str = ""
    worker: str | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    exit_code: int | None = None
    signal: int | None = None


class LaunchRecord(BaseModel):
    """One slot's (or one manual run's) fate, as stored under ``launches/<launch_id>``."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    launch_id: str
    job: str
    slot: datetime | None  # None for a manual run
    kind: LaunchKind = LaunchKind.SCHEDULED
    state: LaunchState
    reason: str = ""
    cause: Cause | None = None
    # Skipped/missed records may span consecutive slots: slot … until, count of them.
    until: datetime | None = None
    count: int = 1
    fence: int = 0  # the fence of the leader that wrote the intent
    replica: str | None = None  # that leader's id
    executor: str | None = None
    worker: str | None = None
    # Where the executor keeps the run (host and run directory for local runs):
    # a new leader asks its own executor about the run only when it is the same.
    location: str | None = None
    attempt: int = 1
    run_id: str | None = None  # the executor's id for the current attempt
    attempts: tuple[Attempt, ...] = ()  # the earlier ones, oldest first (bounded)
    # Set when an attempt repeats one whose fate was unknown: the receiver's
    # deduplication key of that attempt, so it can recognise the repeat.
    idempotency_key: str | None = None
    intent_at: datetime | None = None
    # Committed ahead of its slot and handed to the executor to wait there: it
    # starts only once a leader has written its release (``released/``).
    staged: bool = False
    started_at: datetime | None = None
    ended_at: datetime | None = None
    retry_at: datetime | None = None
    exit_code: int | None = None
    signal: int | None = None
    pid: int | None = None

    @property
    def ahead(self) -> bool:
        """Committed ahead of its slot and not started yet: the job's next
        launch, not its latest outcome."""
        return self.staged and self.state is LaunchState.LAUNCHING and self.started_at is None

    @property
    def waiting_for_resources(self) -> bool:
        """Queued in its executor (a batch scheduler), not in the core."""
        return self.state is LaunchState.QUEUED and self.cause is Cause.WAITING_FOR_RESOURCES

    @property
    def launched(self) -> bool:
        """An executor was (or may have been) asked to run it."""
        return self.state.launched or self.waiting_for_resources

    @property
    def submitted(self) -> bool:
        """Its executor has it (or may have it), not yet ended: launching,
        running, or queued there for resources. Such a launch is asked about at
        takeover, stopped through its executor, and its end is recorded."""
        return self.state in _SUBMITTED or self.waiting_for_resources

    @property
    def active(self) -> bool:
        """Counts as the job's run for overlap policies: submitted, or waiting
        to retry (a launch queued in the core waits behind these)."""
        return self.submitted or self.state is LaunchState.RETRYING

    @property
    def waiting(self) -> bool:
        """Queued in the core: for a live run to end, or for a worker."""
        return self.state is LaunchState.QUEUED and not self.waiting_for_resources

    def to_json(self) -> bytes:
        return self.model_dump_json(exclude_defaults=True).encode()

    def with_attempt_done(self, state: LaunchState, reason: str) -> LaunchRecord:
        """The record with its current attempt moved to ``attempts`` as ended in
        ``state`` (the record's own fields then belong to the next attempt)."""
        done = Attempt(attempt=self.attempt, run_id=self.run_id or self.launch_id, state=state,
                       reason=reason, worker=self.worker, started_at=self.started_at,
                       ended_at=self.ended_at, exit_code=self.exit_code, signal=self.signal)
        kept = (*self.attempts, done)[-MAX_ATTEMPTS_KEPT:]
        return self.model_copy(update={"attempts": kept})

    @classmethod
    def from_json(cls, data: bytes) -> LaunchRecord:
        return cls.model_validate_json(data)


def launch_id_for(job: str, slot: datetime) -> str:
    return f"{job}@{utc_iso(slot)}"


def manual_launch_id(job: str, at: datetime) -> str:
    """An id for a run started by hand: ``manual-`` can never begin a slot."""
    stamp = at.astimezone(UTC).strftime("%Y%m%dT%H%M%S")
    return f"{job}@manual-{stamp}-{secrets.token_hex(3)}"


def run_id_for(launch_id: str, attempt: int) -> str:
    """The executor's id for one attempt: the launch id, then ``~N`` for retries."""
    return launch_id if attempt == 1 else f"{launch_id}~{attempt}"


def launch_id_of(run_id: str) -> str:
    """The launch an attempt's id belongs to (job names hold no ``~``)."""
    return run_id.partition("~")[0]
