"""How the leader and worker agents talk: through the store, never directly.

1. A worker registers ``workers/<id>`` under its own lease (:class:`WorkerInfo`)
   and rewrites it every few seconds with its running count and load. When the
   worker dies its lease expires and the key vanishes.

   (Below, ``<launch id>`` in a key is the attempt's run id: the launch id, with
   ``~N`` for a retry, so that each attempt is a run of its own to the worker.)
2. The leader assigns a launch by writing ``assign/<worker>/<launch id>`` (the
   :class:`~distcron.executors.base.LaunchRequest` as JSON) in the same fenced
   transaction as the launch intent.
3. The worker claims it with one transaction: its registration still holds its
   lease, the assignment still holds the value the worker read, and no claim
   exists yet; it writes ``claims/<launch id>``. Only then does it start the
   run (through a local executor whose run directory persists, so a restarted
   worker never starts a launch twice and adopts what it had started).
4. The worker reports ``reports/<launch id>`` (:class:`Report`): ``running``
   once started, then the final status, with the run's output under
   ``output/<launch id>`` in the same transaction.
5. The leader records the outcome and deletes the assignment, claim and report
   in one fenced transaction. When a worker's registration vanishes, its
   launches without a final report become ``lost``.

A launch due within the leader's staging lead is assigned ahead, to a worker
that says it ``stages``, with ``release_by`` in the assignment
(:func:`assignment_value`). The worker claims it as above, prepares it, and
starts it only once a release mark ``released/<mark>`` (a JSON list of launch
ids, committed by the leader under its fence at the slot) names it; see
:mod:`distcron.worker.staged`.

Stopping a run (the overlap policy ``concurrency = "replace"``): the leader
rewrites the assignment as a stop request (:func:`stop_value`,
``{"launch_id": …, "stop": true}``) in the same fenced transaction as the
launch's record; a launch it starts and stops in one transaction is assigned
as the stop alone. The stop is the assignment itself, not a key beside it, so
that:

- a restarted worker finds it in the read it starts from, like any assignment;
- the claim is guarded by the assignment's *value* being the one the worker
  read: a stop written before the claim makes the claim fail, the worker reads
  the stop, and the launch is never started (it is claimed and reported
  ``stopped`` at once, whatever the slots, so the leader can record it);
- a stop written after the claim reaches the worker through its watch of
  ``assign/<id>/``: a run not yet started is not started, a live one is stopped
  through the executor (its whole process group), and the end is reported as
  usual, ``stopped``;
- the leader's clean-up after the outcome deletes it with the rest.

The stop carries no request: nothing needs one to *not* start a launch, and the
leader can write it without the job's spec.
"""

from __future__ import annotations

import json
from datetime import datetime

from pydantic import BaseModel, ConfigDict

from distcron.executors.base import LaunchRequest, RunStatus
from distcron.timefmt import utc_iso


class WorkerInfo(BaseModel):
    """The value of ``workers/<id>``."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str
    host: str = ""
    slots: int = 1
    tags: tuple[str, ...] = ()
    running: int = 0
    load: float = 0.0  # 1-minute load average divided by the CPU count
    started_at: str = ""
    version: str = ""
    # It holds a launch assigned ahead of its slot staged until a release mark
    # names it (see the module docstring). False in registrations of workers
    # from before staging: they are never sent a staged launch.
    stages: bool = False

    @property
    def free(self) -> int:
        return max(0, self.slots - self.running)

    def to_json(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_json(cls, data: bytes) -> WorkerInfo:
        return cls.model_validate_json(data)


class Claim(BaseModel):
    """The value of ``claims/<launch id>``."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    worker: str
    claimed_at: str = ""


class Report(BaseModel):
    """The value of ``reports/<launch id>``: what the worker knows of the run."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    worker: str
    status: dict[str, object]  # RunStatus.to_dict()

    def run_status(self) -> RunStatus:
        return RunStatus.from_dict(self.status)

    @classmethod
    def of(cls, worker: str, status: RunStatus) -> Report:
        return cls(worker=worker, status=status.to_dict())

    def to_json(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_json(cls, data: bytes) -> Report:
        return cls.model_validate_json(data)


def assignment_value(request: LaunchRequest, release_by: datetime | None = None) -> bytes:
    """The value of ``assign/<worker>/<launch id>``: the request, and for a
    launch staged ahead of its slot, ``release_by``."""
    body = request.to_dict()
    if release_by is not None:
        body["release_by"] = utc_iso(release_by)
    return json.dumps(body).encode()


def release_by_of(value: bytes) -> datetime | None:
    """When a staged assignment stops being held ready (None: not staged, or
    unreadable: the runner reports that as a bad assignment)."""
    try:
        body = json.loads(value)
        return datetime.fromisoformat(body["release_by"]) if isinstance(body, dict) else None
    except (ValueError, KeyError, TypeError):
        return None


def stop_value(run_id: str) -> bytes:
    """The value of ``assign/<worker>/<launch id>`` once the leader wants the
    launch stopped (see the module docstring)."""
    return json.dumps({"launch_id": run_id, "stop": True}).encode()


def stop_requested(value: bytes) -> bool:
    """Whether an assignment's value is a stop request. An unreadable value is
    not: the runner reports it as a bad assignment."""
    try:
        body = json.loads(value)
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("stop") is True
