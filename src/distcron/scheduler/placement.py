"""Handing launches over: to this replica's executors at once, or to the worker
agent that fits best, waiting (queued) while none can take it.

Pure: the core tells it which workers are registered; it reads what runs where
from the core's ledger.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from distcron.scheduler.ledger import Ledger
from distcron.scheduler.plan import Plan
from distcron.scheduler.policy import PLACEMENT_RETRY, JobPolicy, WorkerView, starting_deadline
from distcron.scheduler.records import Cause, LaunchRecord, LaunchState
from distcron.scheduler.wakeups import WakeKind, Wakeup, Wakeups

_REASON_NO_WORKER = "waiting for a worker"
_REASON_NO_WORKER_IN_TIME = "no worker could take it before its starting deadline"


class Placement:
    def __init__(self, ledger: Ledger, wakeups: Wakeups) -> None:
        self._ledger = ledger
        self._wakeups = wakeups
        self.workers: dict[str, WorkerView] = {}
        # Workers whose registration went while runs were assigned to them, and when.
        self.vanished: dict[str, datetime] = {}
        # The next placement attempt of each launch waiting for a worker: one
        # wake-up per launch, however often the workers change.
        self._place_at: dict[str, float] = {}

    def update(self, workers: Mapping[str, WorkerView], running_on: Iterable[str],
               now: datetime) -> list[str]:
        """The registered workers changed; ``running_on`` names the workers of
        live runs. Returns the workers that vanished now (their grace begins)."""
        self.workers = dict(workers)
        for back in self.vanished.keys() & self.workers.keys():
            del self.vanished[back]
        gone = []
        for worker in running_on:
            if worker not in self.workers and worker not in self.vanished:
                self.vanished[worker] = now
                gone.append(worker)
        return gone

    def dispatch(self, record: LaunchRecord, now: datetime, plan: Plan) -> None:
        """Hand a launching record over: a launch on a worker agent first needs a
        worker, and waits (queued) while none can take it."""
        job = self._ledger.jobs.get(record.job)
        if record.executor == "agent" and job is not None:
            worker = self.choose(job.spec)
            if worker is None:
                tags = f" with tags {', '.join(job.spec.tags)}" if job.spec.tags else ""
                waiting = record.model_copy(update={
                    "state": LaunchState.QUEUED, "cause": Cause.WAITING_FOR_WORKER,
                    "reason": _REASON_NO_WORKER + tags})
                when = now + PLACEMENT_RETRY
                self._place_at[record.launch_id] = when.timestamp()
                self._wakeups.push(when, WakeKind.PLACE, record.launch_id)
                if waiting == self._ledger.find(record.launch_id):
                    return  # still waiting as written: nothing to write
                record = waiting
            else:
                self._place_at.pop(record.launch_id, None)
                record = record.model_copy(update={"worker": worker})
        self._ledger.replace(record)
        plan.write(record)
        if record.state is LaunchState.LAUNCHING:
            plan.starts.append(record)

    def place_again(self, launch_id: str, now: datetime, plan: Plan) -> None:
        """A launch waiting for a worker looks again, or is missed past its deadline."""
        record = self._ledger.find(launch_id)
        job = self._ledger.jobs.get(record.job) if record is not None else None
        if record is None or job is None or record.cause is not Cause.WAITING_FOR_WORKER:
            return
        deadline = starting_deadline(job.spec)
        since = record.slot or record.intent_at or now
        if deadline is not None and now - since > deadline:
            self._place_at.pop(launch_id, None)
            self._ledger.end(record, LaunchState.MISSED, Cause.NO_WORKER_IN_TIME,
                             _REASON_NO_WORKER_IN_TIME, now, plan)
        else:
            launching = record.model_copy(update={"state": LaunchState.LAUNCHING,
                                                  "reason": "", "cause": None})
            self.dispatch(launching, now, plan)

    def choose(self, job: JobPolicy, *, staging: bool = False) -> str | None:
        """The eligible worker (its tags include the job's, a slot free; with
        ``staging``, one that stages) that is least busy: the share of its
        slots in use plus its machine's load."""
        busy = self._ledger.busy
        needed = set(job.tags)
        best: tuple[float, str] | None = None
        for worker in self.workers.values():
            used = busy[worker.id]
            if (used >= worker.slots or not needed <= set(worker.tags)
                    or (staging and not worker.stages)):
                continue
            score = (used / worker.slots + worker.load, worker.id)
            if best is None or score < best:
                best = score
        return None if best is None else best[1]

    def stale(self, entry: Wakeup) -> bool:
        """A placement wake-up superseded by a later one, or of a launch no longer live."""
        if self._place_at.get(entry.key) != entry.when:
            return True
        if self._ledger.find(entry.key) is None:
            del self._place_at[entry.key]
            return True
        return False
