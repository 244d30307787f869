"""What a new leader starts from: the state as of one revision, parsed."""

from __future__ import annotations

from dataclasses import dataclass, field

from distcron.scheduler.records import LaunchRecord
from distcron.store.layout import Cursor


@dataclass(slots=True)
class Snapshot:
    revision: int
    jobs: dict[str, bytes] = field(default_factory=dict)  # job specs as stored (JSON)
    cursors: dict[str, Cursor] = field(default_factory=dict)
    # Live launches, and the skipped/missed span each cursor points at.
    records: list[LaunchRecord] = field(default_factory=list)
    # Launch ids of such records not held (the leader reads them from the store).
    missing: list[str] = field(default_factory=list)
    triggers: dict[str, bytes] = field(default_factory=dict)  # not yet consumed
    workers: dict[str, bytes] = field(default_factory=dict)  # registrations as stored
    reports: dict[str, bytes] = field(default_factory=dict)  # by launch id
    released: dict[str, bytes] = field(default_factory=dict)  # release marks as stored
    notifications: dict[str, bytes] = field(default_factory=dict)  # pending, by name

