"""The API's request and response bodies (the job spec itself is :mod:`distcron.jobs`')."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from distcron.jobs import JobSpec
from distcron.scheduler.records import Attempt, LaunchRecord, LaunchState


class Health(BaseModel):
    ok: bool
    replica: str
    leader: bool = Field(description="whether this replica is the leader")
    fence: int | None = Field(default=None, description="its fence while it leads")
    clock_skew: float | None = Field(
        default=None, description="seconds its wall clock is ahead of the median of the "
        "replicas' clocks (negative: behind; null before it heard another replica)")
    clock_problem: str | None = Field(
        default=None, description="why its clock keeps it from leading, or null")
    revision: int = Field(
        default=0, description="the store revision this replica's state has caught up with")
    store_problem: str | None = Field(
        default=None, description="why this replica stopped using its store (its file "
        "removed or replaced); it leads no more until restarted")


class ReplicaRegistration(BaseModel):
    """What each replica writes, leased, under ``replicas/<id>``."""

    model_config = ConfigDict(extra="ignore")

    id: str
    listen: str
    started_at: datetime | None = None
    version: str | None = None
    host: str | None = None


class ReplicaStatus(ReplicaRegistration):
    is_leader: bool
    healthy: bool = Field(description="registered, and its API answered just now")
    revision: int | None = Field(
        default=None, description="the store revision its state has caught up with")
    lag: int | None = Field(
        default=None, description="revisions its state is behind the status' revision "
        "(null when it did not answer)")
    clock_skew: float | None = Field(
        default=None, description="its clock's lead on the replicas' median, as it says")
    clock_problem: str | None = Field(
        default=None, description="why its clock keeps it from leading, as it says")


class WorkerStatus(BaseModel):
    id: str
    slots: int
    running: int
    load: float
    host: str = ""
    tags: tuple[str, ...] = ()
    healthy: bool = True  # registrations are leased: a worker that stopped renewing is gone


class ClusterStatus(BaseModel):
    replica: str = Field(description="the replica that answered")
    leader: str | None = Field(
        description="the leader's replica id, or null when none (also when the replica "
        "holding the leader key says it does not lead: see leader_note)")
    fence: int | None = Field(description="the leader's fence (create revision of its key)")
    leader_note: str | None = Field(
        default=None, description="why the replica holding the leader key is not the leader")
    revision: int = Field(description="the store revision this status was read at")
    leader_changes: int = Field(description="leader changes the answering replica has seen")
    replicas: list[ReplicaStatus]
    workers: list[WorkerStatus]


class RunSummary(BaseModel):
    """A job's latest launch, as shown next to the job."""

    launch_id: str
    state: LaunchState
    slot: datetime | None
    started_at: datetime | None
    ended_at: datetime | None
    exit_code: int | None
    staged: bool = Field(default=False, description="committed ahead of its slot, held ready "
                         "to start at it (see the README's staging)")


class JobView(JobSpec):
    """A job as the API shows it: the spec, its next slot and its latest launch."""

    next: datetime | None = Field(
        description="the next slot, in UTC (also while paused); null when the schedule "
        "has no slot to come")
    last_run: RunSummary | None = Field(
        description="the job's latest launch record, if any; not one staged ahead of its "
                    "slot and not started yet")
    quarantined: str | None = Field(
        default=None, description="why the leader gives the job no slots (its schedule "
        "cannot be computed any more), until its spec changes; null for a job that runs")


class AttemptDetail(Attempt):
    output: str | None = Field(
        default=None, description="the attempt's output; only with ?output=true")


class RunDetail(LaunchRecord):
    output: str | None = Field(
        default=None, description="the current attempt's output; only with ?output=true "
        "(needs the token)"
    )
    attempts: tuple[AttemptDetail, ...] = Field(
        default=(), description="the earlier attempts (retried, or relaunched at takeover), "
        "oldest first, each with its own start, end, exit and (with ?output=true) output")


class ApplyRequest(BaseModel):
    toml: str = Field(description="the whole jobs file")
    dry_run: bool = Field(default=False, description="compute the diff, change nothing")
    prune: bool = Field(
        default=True,
        description="remove jobs that are in the store but not in the file "
        "(the file is the whole set, like installing a crontab)",
    )
    source: str = Field(default="<api>", description="the file's name, for error messages")
    take_over: bool = Field(
        default=False,
        description="take over jobs of the file that a replica's config file defines: "
        "they become the API's (without it, such a job is refused with 409)",
    )


class ApplyResult(BaseModel):
    added: list[str]
    changed: list[str]
    removed: list[str]
    unchanged: list[str]
    changes: dict[str, list[str]] = Field(
        default_factory=dict, description="per changed job, the keys whose values change")
    dry_run: bool
    revision: int = Field(description="the store revision after applying (or as read)")
    notifiers_added: list[str] = Field(default_factory=list)
    notifiers_changed: list[str] = Field(default_factory=list)
    notifiers_removed: list[str] = Field(default_factory=list)


class TriggerResult(BaseModel):
    job: str
    launch_id: str
    requested_at: datetime


class BackfillRequest(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    start: AwareDatetime = Field(alias="from", description="the range's first instant "
                                 "(its slots at or after it)")
    end: AwareDatetime = Field(alias="to", description="the range's last instant (its slots "
                               "at or before it); not in the future")
    dry_run: bool = Field(default=False, description="list what would run, launch nothing")


class BackfillSlot(BaseModel):
    launch_id: str
    slot: datetime
    state: LaunchState | None = Field(
        default=None, description="the state of the record the slot already has")


class BackfillResult(BaseModel):
    job: str
    launched: list[BackfillSlot] = Field(
        description="the slots asked of the leader, each launched once as <job>@<slot> "
        "(with dry_run: those that would be)")
    existing: list[BackfillSlot] = Field(
        description="the slots that already have a record, left as they are")
    dry_run: bool


class Removed(BaseModel):
    job: str
    removed: bool = True


class Problem(BaseModel):
    """One thing wrong with a request: which job and field (when known), the line of
    a jobs file, and what is wrong, in words."""

    job: str | None = None
    field: str | None = None
    line: int | None = None
    msg: str


class Problems(BaseModel):
    """A 422: every problem of the request at once."""

    detail: list[Problem]


class Refusal(BaseModel):
    """Any other refusal (400, 401, 404, 409, 413, 503): why, in words."""

    detail: str


# What every route may answer besides its own success (in the OpenAPI schema).
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": Refusal, "description": "the request cannot be taken as it is"},
    401: {"model": Refusal, "description": "the API token is missing or wrong"},
    404: {"model": Refusal, "description": "no such job, run or notifier"},
    409: {"model": Refusal, "description": "it changed meanwhile, or another source owns it"},
    413: {"model": Refusal, "description": "the request body is too large"},
    422: {"model": Problems, "description": "the request is not valid: every problem"},
    503: {"model": Refusal, "description": "the store does not answer"},
}
