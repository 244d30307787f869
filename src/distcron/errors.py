"""One error tree for distcron.

Messages are built in ``__init__`` so that every raise site names the thing that
went wrong (the job, the field, the key) the same way.
"""

from __future__ import annotations


class DistcronError(Exception):
    """Root of every error distcron raises on purpose."""


class StoreError(DistcronError):
    """Something went wrong talking to the store."""


class StoreUnavailable(StoreError):
    """The store could not be reached or did not answer in time; retrying may help.

    A write that raised this may or may not have been applied: callers that must
    know read the key back before trying again.
    """


class StoreReplaced(StoreUnavailable):
    """The store's file is no longer the one this process opened: removed,
    replaced, or an older copy put back. Retrying does not help: the process
    stops using the store (a replica stops leading) until it is restarted."""

    def __init__(self, path: object, detail: str) -> None:
        super().__init__(f"sqlite store {path}: {detail}")
        self.path = path
        self.detail = detail


class Compacted(StoreError):
    """A watch asked for history the store no longer keeps."""

    def __init__(self, requested: int, oldest: int) -> None:
        super().__init__(f"revision {requested} is compacted; the oldest kept is {oldest}")
        self.requested = requested
        self.oldest = oldest


class LeaseExpired(StoreError):
    """A lease is gone (expired or revoked): everything attached to it was deleted."""

    def __init__(self, lease_id: int) -> None:
        super().__init__(f"lease {lease_id:#x} has expired or was revoked")
        self.lease_id = lease_id


class NotLeader(DistcronError):
    """A write guarded by leadership failed: this replica is no longer the leader."""

    def __init__(self, replica: str, fence: int) -> None:
        super().__init__(f"replica {replica!r} is no longer leader (fence {fence} failed)")
        self.replica = replica
        self.fence = fence


class CommitRejected(DistcronError):
    """A guarded write did not hold: lost leadership, or a record already exists."""


class Conflict(DistcronError):
    """A compare-and-set lost its race: someone else changed the key first."""

    def __init__(self, key: str, detail: str = "") -> None:
        msg = f"conflicting update of {key!r}"
        super().__init__(f"{msg}: {detail}" if detail else msg)
        self.key = key


class JobSpecError(DistcronError, ValueError):
    """A job spec (or a whole jobs file) is invalid; nothing was applied."""

    def __init__(self, message: str, job: str | None = None, field: str | None = None) -> None:
        where = ""
        if job is not None:
            where = f"job {job!r}"
            if field is not None:
                where += f", field {field!r}"
        elif field is not None:
            where = f"field {field!r}"
        super().__init__(f"{where}: {message}" if where else message)
        self.job = job
        self.field = field


class KeyProblems(DistcronError, ValueError):
    """Raised by checks that involve several keys; each problem names the key to change."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{field}: {message}" for field, message in problems))
        self.problems = problems


class ExecutorError(DistcronError):
    """An executor could not start, query or stop a launch."""


class ConfigError(DistcronError, ValueError):
    """The service configuration is invalid (bad flag, environment variable or file)."""
