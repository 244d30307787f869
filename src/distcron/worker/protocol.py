"""How the leader and worker agents talk: through the store, never directly.

1. A worker registers ``workers/<id>`` under its own lease (:class:`WorkerInfo`)
   and rewrites it every few seconds with its running count and load. When the
   worker dies its lease expires and the key vanishes.
2. The leader assigns a launch by writing ``assign/<worker>/<launch id>`` (the
   :class:`~distcron.executors.base.LaunchRequest` as JSON) in the same fenced
   transaction as the launch intent.
3. The worker claims it with one transaction: its registration still holds its
   lease, the assignment still exists, and no claim exists yet; it writes
   ``claims/<launch id>``. Only then does it start the run (through a local
   executor whose run directory persists, so a restarted worker never starts a
   launch twice and adopts what it had started).
4. The worker reports ``reports/<launch id>`` (:class:`Report`): ``running``
   once started, then the final status, with the run's output under
   ``output/<launch id>`` in the same transaction.
5. The leader records the outcome and deletes the assignment, claim and report
   in one fenced transaction. When a worker's registration vanishes, its
   launches without a final report become ``lost``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from distcron.executors.base import RunStatus


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
