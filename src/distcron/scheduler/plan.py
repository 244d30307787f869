"""A plan: what the scheduler core decided about launch records, to be committed
before anything runs."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from distcron.scheduler.records import LaunchRecord
from distcron.store.layout import Cursor


@dataclass(slots=True)
class Plan:
    """Records to write, cursors to advance, runs to start and stop, jobs put
    into quarantine (with why) or taken out of it (``None``).

    The core builds one per call; the leader's round gathers a round's plans
    into one :class:`~distcron.scheduler.decision.Decision`, which is committed
    in transactions guarded by the leader's fence (and, for new records, by
    "the key must not exist") before any executor is asked to start or stop.
    """

    records: dict[str, LaunchRecord] = field(default_factory=dict)
    created: set[str] = field(default_factory=set)  # launch ids whose key must not exist yet
    ended: set[str] = field(default_factory=set)  # launch ids that were live and are not now
    cursors: dict[str, Cursor] = field(default_factory=dict)
    starts: list[LaunchRecord] = field(default_factory=list)
    stops: list[LaunchRecord] = field(default_factory=list)
    # Launches committed ahead of their slot: to prepare, to start now, to let go.
    stages: list[LaunchRecord] = field(default_factory=list)
    releases: list[LaunchRecord] = field(default_factory=list)
    unstages: list[LaunchRecord] = field(default_factory=list)
    quarantined: dict[str, str | None] = field(default_factory=dict)

    def write(self, record: LaunchRecord, *, create: bool = False) -> None:
        self.records[record.launch_id] = record
        if create:
            self.created.add(record.launch_id)

    def absorb(self, later: Plan) -> None:
        """Add a later plan's decisions to this one, its writes of a record winning."""
        for launch_id, record in later.records.items():
            self.write(record, create=launch_id in later.created)
        self.ended |= later.ended
        self.cursors.update(later.cursors)
        self.starts.extend(later.starts)
        self.stops.extend(later.stops)
        self.stages.extend(later.stages)
        self.releases.extend(later.releases)
        self.unstages.extend(later.unstages)
        self.quarantined.update(later.quarantined)

    def __bool__(self) -> bool:
        return bool(self.records or self.cursors or self.starts or self.stops
                    or self.stages or self.releases or self.unstages or self.quarantined)


def merge(plans: Iterable[Plan]) -> Plan:
    """Several plans as one, later writes of a record winning."""
    merged = Plan()
    for plan in plans:
        merged.absorb(plan)
    return merged
