"""What a leader's round learns: the typed inputs of
:meth:`~distcron.scheduler.rounds.LeaderRounds.decide`.

Each is something that happened outside the core: a change the leader saw in
the store (a job, a trigger, a worker, a report) or an executor's answer about
a run. Reading them (from the store, from an executor) is the leader's I/O;
deciding what they mean is the round's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from distcron.executors.base import RunStatus
from distcron.jobs import JobSpec
from distcron.scheduler.policy import WorkerView
from distcron.store.layout import Cursor


@dataclass(frozen=True, slots=True)
class JobChanged:
    """A job was added or edited. ``cursor``: the stored cursor of a job this
    leader does not know yet (None: the job owns the slots after now)."""

    spec: JobSpec
    cursor: Cursor | None = None


@dataclass(frozen=True, slots=True)
class JobUnreadable:
    """A stored spec that does not validate (any more): the job is quarantined."""

    name: str
    error: str


@dataclass(frozen=True, slots=True)
class JobRemoved:
    name: str


@dataclass(frozen=True, slots=True)
class Triggered:
    """Someone asked for a run now (``triggers/<trigger id>``); with ``slot``,
    a backfill: that past slot of the job, launched as ``<job>@<slot>``."""

    trigger_id: str
    job: str
    launch_id: str
    slot: datetime | None = None


@dataclass(frozen=True, slots=True)
class Reported:
    """A worker agent reported on a run it was assigned (``reports/<run id>``)."""

    run_id: str
    worker: str
    status: RunStatus


@dataclass(frozen=True, slots=True)
class WorkersChanged:
    """The registered workers now. ``reports``: the last report of each run on a
    worker that is gone (it may have reported an end just before it died)."""

    workers: Mapping[str, WorkerView]
    reports: Mapping[str, Reported] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RunStarted:
    """An executor on this replica started (or adopted) a run."""

    launch_id: str
    status: RunStatus
    worker: str | None = None


@dataclass(frozen=True, slots=True)
class RunPending:
    """A run handed to a batch scheduler waits there (``PENDING``, with the
    scheduler's reason): it is recorded queued, waiting for resources (and is
    launched all the same: see ``LaunchRecord.submitted``)."""

    launch_id: str
    status: RunStatus


@dataclass(frozen=True, slots=True)
class RunEnded:
    """A run on this replica's executor reached its final state (or could not
    be started: ``FAILED`` with the reason)."""

    launch_id: str
    status: RunStatus
    output: bytes = b""


@dataclass(frozen=True, slots=True)
class RunUnknown:
    """The leader lost track of a run on this replica's executor (its wait kept
    failing): its fate cannot be learnt here, so it is recorded ``unknown``."""

    launch_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class Settled:
    """What a new leader learnt of a run the previous leader left launching or
    running: the status from the executor that holds it, or ``None`` when no
    executor here can tell (another machine's, or the query failed)."""

    launch_id: str
    status: RunStatus | None
    output: bytes = b""
    worker: str | None = None  # what the run records as its worker when adopted


@dataclass(frozen=True, slots=True)
class StoreRestored:
    """The store was restored from a copy (``meta/restored``, written by the
    restore): slots up to ``at`` that the copy does not account for are missed."""

    at: datetime
    marker: bytes  # the marker's value, deleted once the slots are accounted for


Input = (JobChanged | JobUnreadable | JobRemoved | Triggered | Reported | WorkersChanged
         | RunStarted | RunPending | RunEnded | RunUnknown | Settled | StoreRestored)
