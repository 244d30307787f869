"""What the scheduler core needs to know about a job, and the rules that need no state.

The core depends on this protocol rather than on the jobs package's model, so
its tests can describe jobs in a line.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from distcron.jobs.spec import Catchup, Concurrency
from distcron.jobs.spec import Executor as ExecutorKind

# A slot counts as on time this long after its instant, even with catch-up
# "none": long enough to cover a leader failover, short enough that "none"
# still means "don't run what fell due while distcron was down".
ON_TIME_TOLERANCE = timedelta(seconds=10)

# Retry backoff doubles per attempt up to this.
MAX_RETRY_BACKOFF = timedelta(hours=1)

# How often a paused job's slots are accounted for (as one growing "skipped"
# record) instead of waking the leader at every slot: seen within seconds, and
# a job paused at one run a second grows its record once every few seconds.
PAUSED_ACCOUNTING_INTERVAL = timedelta(seconds=5)

# How often a launch that no worker can take yet looks for one again (it also
# looks whenever the set of workers changes).
PLACEMENT_RETRY = timedelta(seconds=1)

# A worker whose registration vanished has this long to come back (a restart)
# before its runs are declared lost.
WORKER_GRACE = timedelta(seconds=10)

# A job's oldest records are pruned after every this many records written for
# it, so the cost follows the write rate and an idle job costs nothing.
PRUNE_EVERY = 50

# How long before its slot a launch may be committed and staged (seconds): long
# enough to prepare ten thousand launches on a small machine (two cores: their
# intents, run directories and held shells take some ten seconds).
STAGE_LEAD = 15.0

# At most this many launches are staged (committed ahead of their slot) at once.
MAX_STAGED = 20_000

# Past this many overdue slots of one job (e.g. a per-second job after a long
# outage) the rest are counted as one missed span without visiting each.
MAX_BACKLOG_SLOTS = 10_000


class JobPolicy(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def schedule(self) -> str: ...
    @property
    def timezone(self) -> str: ...
    @property
    def concurrency(self) -> Concurrency: ...
    @property
    def catchup(self) -> Catchup: ...
    @property
    def starting_deadline(self) -> float | None: ...  # seconds
    @property
    def retries(self) -> int: ...
    @property
    def retry_backoff(self) -> float: ...  # seconds
    @property
    def paused(self) -> bool: ...
    @property
    def idempotent(self) -> bool: ...
    @property
    def executor(self) -> ExecutorKind: ...
    @property
    def tags(self) -> tuple[str, ...]: ...


@dataclass(frozen=True, slots=True)
class Policy:
    """A job reduced to what the core decides with: a leader holds one per job,
    so it is kept small (a full job spec is several times larger)."""

    name: str
    schedule: str
    timezone: str
    concurrency: Concurrency
    catchup: Catchup
    starting_deadline: float | None
    retries: int
    retry_backoff: float
    paused: bool
    idempotent: bool
    executor: ExecutorKind
    tags: tuple[str, ...]

    @classmethod
    def of(cls, job: JobPolicy) -> Policy:
        return cls(job.name, job.schedule, job.timezone, job.concurrency, job.catchup,
                   job.starting_deadline, job.retries, job.retry_backoff, job.paused,
                   job.idempotent, job.executor, tuple(job.tags))


class WorkerView(Protocol):
    """What the core needs to know of a registered worker agent."""

    @property
    def id(self) -> str: ...
    @property
    def slots(self) -> int: ...
    @property
    def tags(self) -> tuple[str, ...]: ...
    @property
    def load(self) -> float: ...
    @property
    def stages(self) -> bool: ...  # it can hold a launch staged until its release mark


def starting_deadline(job: JobPolicy) -> timedelta | None:
    return None if job.starting_deadline is None else timedelta(seconds=job.starting_deadline)


def retry_delay(job: JobPolicy, failed_attempt: int) -> timedelta:
    """``retry_backoff · 2^(attempt-1)``, capped at an hour (or at the backoff
    itself when that is longer)."""
    base = timedelta(seconds=job.retry_backoff)
    delay: timedelta = base * (2 ** (failed_attempt - 1))
    return min(delay, max(base, MAX_RETRY_BACKOFF))
