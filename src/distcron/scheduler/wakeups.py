"""When the core next has something to do: a heap of typed wake-ups.

The core wakes only for the earliest entry, never by polling every job. An
entry may go stale (the job was edited, the launch ended, the worker came
back); the core tells which ones, and a stale entry is dropped unseen.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum


class WakeKind(Enum):
    SLOT = "slot"  # a job's next slot (key: the job; version: the job's version)
    PLACE = "place"  # a launch waiting for a worker looks again (key: the launch id)
    RETRY = "retry"  # a failed run's next attempt (key: the launch id)
    VANISHED = "vanished"  # a vanished worker's grace ends (key: the worker)
    RELEASE = "release"  # a staged launch's slot (key: the launch id)


@dataclass(frozen=True, slots=True, order=True)
class Wakeup:
    when: float  # POSIX seconds: cheaper to compare than datetimes
    seq: int  # ties in push order; unique, so later fields never compare
    kind: WakeKind = field(compare=False)
    key: str = field(compare=False)
    version: int = field(default=0, compare=False)


class Wakeups:
    def __init__(self, stale: Callable[[Wakeup], bool]) -> None:
        self._heap: list[Wakeup] = []
        self._seq = itertools.count()
        self._stale = stale

    def push(self, when: datetime, kind: WakeKind, key: str, version: int = 0) -> None:
        heapq.heappush(self._heap, Wakeup(when.timestamp(), next(self._seq), kind, key, version))

    def next(self) -> datetime | None:
        """The earliest live entry's time (stale ones are dropped on the way)."""
        while self._heap and self._stale(self._heap[0]):
            heapq.heappop(self._heap)
        return datetime.fromtimestamp(self._heap[0].when, UTC) if self._heap else None

    def due(self, now: datetime) -> Iterator[Wakeup]:
        """Pop every live entry due at ``now``, earliest first. Entries pushed
        meanwhile for ``now`` or earlier are popped too."""
        limit = now.timestamp()
        while self._heap and self._heap[0].when <= limit:
            entry = heapq.heappop(self._heap)
            if not self._stale(entry):
                yield entry
