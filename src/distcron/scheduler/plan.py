"""A plan: what the scheduler core decided, to be committed before anything runs."""

from __future__ import annotations

from dataclasses import dataclass, field

from distcron.scheduler.records import LaunchRecord
from distcron.store.layout import Cursor


@dataclass(slots=True)
class Plan:
    """Records to write, cursors to advance, runs to start and stop.

    The runtime commits ``records`` and ``cursors`` in transactions guarded by
    the leader's fence (and, for new records, by "the key must not exist");
    only then does it ask executors to ``start`` and ``stop``.
    """

    records: dict[str, LaunchRecord] = field(default_factory=dict)
    created: set[str] = field(default_factory=set)  # launch ids whose key must not exist yet
    cursors: dict[str, Cursor] = field(default_factory=dict)
    starts: list[LaunchRecord] = field(default_factory=list)
    stops: list[LaunchRecord] = field(default_factory=list)
    consumed_triggers: list[str] = field(default_factory=list)

    def write(self, record: LaunchRecord, *, create: bool = False) -> None:
        self.records[record.launch_id] = record
        if create:
            self.created.add(record.launch_id)

    def __bool__(self) -> bool:
        return bool(self.records or self.cursors or self.starts or self.stops
                    or self.consumed_triggers)

    def jobs(self) -> set[str]:
        """Every job this plan touches: its writes must commit together."""
        return {r.job for r in self.records.values()} | set(self.cursors)

