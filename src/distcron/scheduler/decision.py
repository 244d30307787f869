"""One round's decision: everything the leader writes, then does.

Built by :class:`~distcron.scheduler.rounds.LeaderRounds` (pure), committed by
the leader in transactions guarded by its fence (``replica/commit.py``), and
only then handed to executors. Nothing in it has been written or done yet.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from distcron.executors.base import LaunchRequest
from distcron.scheduler.records import LaunchRecord
from distcron.store.layout import Cursor


@dataclass(frozen=True, slots=True)
class Start:
    """A launch to start: on a worker agent (its assignment is written with the
    record) or on this replica's executor (after the commit). ``release_by``:
    a launch staged on a worker agent, which holds it until a release mark
    names it, prepared no longer than this."""

    record: LaunchRecord
    request: LaunchRequest
    release_by: datetime | None = None


@dataclass(frozen=True, slots=True)
class WorkerRun:
    """A run on a worker agent, by its worker and the attempt's run id."""

    worker: str
    run_id: str
    launch_id: str


@dataclass(frozen=True, slots=True)
class Notification:
    """People to tell that a launch reached a state: written with its record
    (``notify/<launch id>:<state>``), delivered by the leader."""

    launch_id: str
    state: str
    body: Mapping[str, object]
    notifiers: tuple[str, ...]
    with_output: bool


@dataclass(frozen=True, slots=True)
class Note:
    """One thing the round did and why, for the leader's log (``event=… k=v``)."""

    event: str
    fields: tuple[tuple[str, object], ...] = ()
    warning: bool = False


@dataclass(frozen=True, slots=True)
class Decision:
    # Launch records to write; those in ``created`` must not exist yet.
    records: Mapping[str, LaunchRecord] = field(default_factory=dict)
    created: frozenset[str] = frozenset()
    cursors: Mapping[str, Cursor] = field(default_factory=dict)
    consumed_triggers: tuple[str, ...] = ()
    # Written with their launch's record:
    outputs: Mapping[str, bytes] = field(default_factory=dict)  # by run id
    assignments: tuple[Start, ...] = ()  # launches given to worker agents
    stop_requests: tuple[WorkerRun, ...] = ()  # runs on worker agents to stop
    cleanups: tuple[WorkerRun, ...] = ()  # ended runs whose worker keys go
    # Release marks (``released/<key>``: the staged launches this decision
    # releases, written before any is released), and marks no longer needed.
    release_marks: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    release_cleanups: tuple[str, ...] = ()
    notifications: tuple[Notification, ...] = ()  # written with their launch's record
    # The restore marker whose slots this decision accounts for: deleted last.
    restore_marker: bytes | None = None
    # Jobs put into quarantine (with why) or taken out of it (None).
    quarantined: Mapping[str, str | None] = field(default_factory=dict)
    # Done after the commit, by this replica:
    starts: tuple[Start, ...] = ()  # on its executors
    stops: tuple[LaunchRecord, ...] = ()  # on its executors
    stages: tuple[Start, ...] = ()  # prepared now by its executors, released at their slot
    releases: tuple[Start, ...] = ()  # staged launches to start now (their marks committed)
    unstages: tuple[LaunchRecord, ...] = ()  # staged launches to let go
    follows: tuple[LaunchRecord, ...] = ()  # runs adopted at takeover, followed to their end
    prunes: tuple[str, ...] = ()  # jobs whose oldest records to delete
    notes: tuple[Note, ...] = ()  # why, for the log

    def writes(self) -> bool:
        """Whether the decision has anything to commit."""
        return bool(self.records or self.cursors or self.consumed_triggers or self.outputs
                    or self.assignments or self.stop_requests or self.cleanups
                    or self.notifications
                    or self.quarantined or self.restore_marker is not None
                    or self.release_marks or self.release_cleanups)

    def __bool__(self) -> bool:
        return self.writes() or bool(self.starts or self.stops or self.follows or self.prunes
                                     or self.stages or self.releases or self.unstages)
