"""What the running replica tells the API about itself."""

from __future__ import annotations

from typing import Protocol


class ReplicaView(Protocol):
    """A live view of this replica; properties are read on every request."""

    replica_id: str
    listen: str  # "127.0.0.1:8500"

    @property
    def is_leader(self) -> bool: ...

    @property
    def fence(self) -> int | None:
        """This replica's fence while it leads, else ``None``."""
        ...

    @property
    def leader_changes(self) -> int: ...

    @property
    def store_problem(self) -> str | None:
        """Why this replica stopped using its store (its file replaced), or None."""
        ...

    @property
    def clock_skew(self) -> float | None:
        """How far this replica's clock is ahead of the replicas' median (None: unknown)."""
        ...

    @property
    def clock_problem(self) -> str | None:
        """Why this replica's clock keeps it from leading, or None."""
        ...

    @property
    def applied_revision(self) -> int:
        """The store revision this replica's in-memory state has caught up with."""
        ...
