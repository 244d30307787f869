"""The store interface, in etcd v3's terms.

Every backend (``sqlite`` on one machine, ``etcd`` in a cluster) keeps the same
contract, and one contract test suite runs over all of them:

- **Revisions.** The store has one revision counter. Every transaction that
  changes something raises it by exactly one; every key written by that
  transaction gets it as ``mod_revision``. A key's ``create_revision`` is the
  revision that created it (it survives updates, a delete and re-create gives a
  new one) and ``version`` counts its writes since creation (0: absent).
- **Transactions** are compare-and-set over several keys: if every
  :class:`Compare` holds, the ``success`` operations are applied, otherwise the
  ``failure`` ones, atomically. Losing a race is *not* an exception:
  ``TxnResult.succeeded`` is ``False``.
- **Leases** carry a TTL measured on a monotonic clock. Keys written with a
  lease are deleted (with delete events) when the lease expires or is revoked.
  ``lease_keepalive`` on a lease that is gone raises :class:`LeaseExpired`.
- **Watches** deliver, in revision order and without gaps, every change under a
  prefix from a start revision on. A start revision older than the backend keeps
  raises :class:`Compacted`; the caller re-reads the prefix and watches from the
  revision of that read plus one.
- **Unreachable** store, or one that did not answer in time: every call raises
  :class:`~distcron.errors.StoreUnavailable`. A write that raised it may have
  been applied; guarded writes (``Compare.missing``) are read back, never blindly
  retried.

Keys are ``str`` (relative to the backend's prefix, which the backend adds and
strips), values are ``bytes``.
"""

from __future__ import annotations

import abc
import asyncio
import operator
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

CompareOp = Literal["==", "!=", "<", ">"]


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int = 0


class Target(StrEnum):
    VERSION = "version"
    CREATE = "create"
    MOD = "mod"
    VALUE = "value"
    LEASE = "lease"


@dataclass(frozen=True, slots=True)
class Compare:
    """One condition of a transaction, on one key.

    For an absent key, ``version``, ``create``, ``mod`` and ``lease`` are 0, and
    a comparison of ``value`` is false whatever the operator and operand (etcd's
    semantics: it cannot tell an absent value from an empty one). Integer targets
    take an ``int`` operand, ``value`` takes ``bytes`` (compared bytewise).
    """

    key: str
    target: Target
    op: CompareOp
    operand: int | bytes

    @classmethod
    def missing(cls, key: str) -> Compare:
        return cls(key, Target.VERSION, "==", 0)

    @classmethod
    def exists(cls, key: str) -> Compare:
        return cls(key, Target.VERSION, ">", 0)

    @classmethod
    def created_at(cls, key: str, revision: int) -> Compare:
        """The key exists and was created at ``revision``: how a fence is checked."""
        return cls(key, Target.CREATE, "==", revision)

    @classmethod
    def modified_at(cls, key: str, revision: int) -> Compare:
        return cls(key, Target.MOD, "==", revision)

    @classmethod
    def value_is(cls, key: str, value: bytes) -> Compare:
        return cls(key, Target.VALUE, "==", value)

    def holds(self, kv: KeyValue | None) -> bool:
        """Whether the comparison holds for the key as ``kv`` (None: absent) has it."""
        if self.target is Target.VALUE:
            return kv is not None and _OPERATORS[self.op](kv.value, self.operand)
        actual = 0 if kv is None else getattr(kv, _FIELDS[self.target])
        return _OPERATORS[self.op](actual, self.operand)


_OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq, "!=": operator.ne, "<": operator.lt, ">": operator.gt}
_FIELDS = {Target.CREATE: "create_revision", Target.MOD: "mod_revision",
           Target.VERSION: "version", Target.LEASE: "lease"}


@dataclass(frozen=True, slots=True)
class Get:
    key: str
    prefix: bool = False


@dataclass(frozen=True, slots=True)
class Put:
    key: str
    value: bytes
    lease: int = 0


@dataclass(frozen=True, slots=True)
class Delete:
    key: str
    prefix: bool = False


Op = Get | Put | Delete


@dataclass(frozen=True, slots=True)
class TxnResult:
    """What a transaction did.

    ``results`` has one entry per operation of the branch that ran: for a
    :class:`Get` a tuple of the key-values read (sorted by key), for a
    :class:`Put` ``None``, for a :class:`Delete` the number of keys deleted.
    ``revision`` is the store's revision after the transaction.
    """

    succeeded: bool
    revision: int
    results: tuple[tuple[KeyValue, ...] | int | None, ...] = ()


@dataclass(frozen=True, slots=True)
class Event:
    """One change seen by a watch. For a delete, ``kv.value`` is ``b""`` and
    ``kv.mod_revision`` is the revision of the delete."""

    type: Literal["put", "delete"]
    kv: KeyValue


@dataclass(frozen=True, slots=True)
class WatchBatch:
    """The events of one or more revisions, in order; ``revision`` is the last
    revision the watch has covered (the next batch starts after it)."""

    revision: int
    events: tuple[Event, ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class StoreMember:
    """One member of a replicated store (an etcd member), as the store tells."""

    name: str
    endpoints: tuple[str, ...]  # where clients reach it
    leader: bool  # the store's own (raft) leader, not distcron's
    healthy: bool  # it answered just now


class Store(abc.ABC):
    """A revisioned key-value store with leases, transactions and watches."""

    # The most comparisons, and operations per branch, one transaction may hold
    # (etcd's --max-txn-ops); None: no limit.
    max_txn_ops: int | None = None
    # Every process of the store runs on this machine (SQLite): replicas of it
    # can see, and must share, one directory of local runs.
    one_machine: bool = False

    @abc.abstractmethod
    async def get(self, key: str) -> KeyValue | None:
        """The key's current value, or ``None`` when it is absent."""

    @abc.abstractmethod
    async def range(self, prefix: str) -> tuple[list[KeyValue], int]:
        """Every key under ``prefix``, sorted by key, and the revision they were read at."""

    @abc.abstractmethod
    async def revision(self) -> int:
        """The store's current revision."""

    async def members(self) -> list[StoreMember] | None:
        """The store's members, where it has any to tell of (None: one file)."""
        return None

    @abc.abstractmethod
    async def txn(
        self,
        compare: Sequence[Compare],
        success: Sequence[Op],
        failure: Sequence[Op] = (),
    ) -> TxnResult:
        """Apply ``success`` if every comparison holds, else ``failure``; atomically.

        As in etcd, the operations of a branch run in order (a ``Get`` sees the
        branch's earlier writes), a branch may not write one key twice (two puts,
        or a put inside a delete's range: ``ValueError``, nothing applied), and a
        ``Put`` with a lease that is gone raises LeaseExpired, nothing applied.
        Keys of ``Compare``, ``Put`` and non-prefix ``Get``/``Delete`` are
        non-empty; a prefix may be ``""`` (every key).
        """

    async def put(self, key: str, value: bytes, *, lease: int = 0) -> int:
        """Write one key unconditionally; returns the new revision."""
        return (await self.txn((), (Put(key, value, lease),))).revision

    async def delete(self, key: str, *, prefix: bool = False) -> int:
        """Delete a key (or every key under a prefix); returns how many were deleted."""
        result = await self.txn((), (Delete(key, prefix),))
        deleted = result.results[0]
        assert isinstance(deleted, int)
        return deleted

    @abc.abstractmethod
    async def lease_grant(self, ttl: float) -> int:
        """A new lease that lives ``ttl`` seconds unless kept alive; returns its id."""

    @abc.abstractmethod
    async def lease_keepalive(self, lease_id: int) -> float:
        """Renew a lease for its full TTL; returns the TTL. Raises LeaseExpired."""

    @abc.abstractmethod
    async def lease_revoke(self, lease_id: int) -> None:
        """End a lease now, deleting its keys. Revoking a lease that is gone is a no-op."""

    @abc.abstractmethod
    def watch(self, prefix: str, start_revision: int) -> AsyncGenerator[WatchBatch, None]:
        """Every change under ``prefix`` from ``start_revision`` on, batch by batch.

        The generator runs until it is closed (``aclose``) or the store is
        closed. Raises Compacted when ``start_revision`` is no longer kept.
        """

    async def wait_fault(self) -> str:
        """Return, with the reason, once this store can no longer be used safely
        (its SQLite file was removed or replaced): every call then raises
        StoreReplaced. A backend that cannot tell never returns."""
        never: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        return await never

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections and end open watches; leases are not revoked (they
        expire by themselves). Closing twice is harmless; other calls after it
        raise StoreUnavailable."""
