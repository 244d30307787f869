"""etcd v3's key-value semantics in a few lines of memory, for the model-based test.

No time and no concurrency: leases live until revoked. Every store backend must
agree with this model on results, revisions, versions and the event history.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from distcron.errors import LeaseExpired
from distcron.store import Compare, Delete, Event, Get, KeyValue, Op, Put, Target, TxnResult
from distcron.store.base import CompareOp

OPS: dict[CompareOp, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    ">": operator.gt,
}


def _selects(key: str, prefix: bool, candidate: str) -> bool:
    return candidate.startswith(key) if prefix else candidate == key


@dataclass
class Model:
    revision: int
    kvs: dict[str, KeyValue] = field(default_factory=dict)
    leases: set[int] = field(default_factory=set)
    events: list[Event] = field(default_factory=list)

    def txn(
        self, compare: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op]
    ) -> TxnResult:
        for branch in (success, failure):
            self._refuse_double_writes(branch)
        succeeded = all(self._holds(c) for c in compare)
        pending = self.revision + 1
        kvs = dict(self.kvs)
        events: list[Event] = []
        results: list[tuple[KeyValue, ...] | int | None] = []
        for op in success if succeeded else failure:
            if isinstance(op, Get):
                results.append(tuple(kvs[k] for k in sorted(kvs) if _selects(op.key, op.prefix, k)))
            elif isinstance(op, Put):
                if op.lease and op.lease not in self.leases:
                    raise LeaseExpired(op.lease)
                old = kvs.get(op.key)
                kvs[op.key] = KeyValue(
                    op.key,
                    op.value,
                    old.create_revision if old else pending,
                    pending,
                    old.version + 1 if old else 1,
                    op.lease,
                )
                events.append(Event("put", kvs[op.key]))
                results.append(None)
            else:
                doomed = sorted(k for k in kvs if _selects(op.key, op.prefix, k))
                for key in doomed:
                    del kvs[key]
                    events.append(Event("delete", KeyValue(key, b"", 0, pending, 0, 0)))
                results.append(len(doomed))
        self._commit(kvs, events)
        return TxnResult(succeeded, self.revision, tuple(results))

    def grant(self, lease: int) -> None:
        self.leases.add(lease)

    def revoke(self, lease: int) -> None:
        if lease not in self.leases:
            return
        self.leases.remove(lease)
        pending = self.revision + 1
        doomed = sorted(k for k, kv in self.kvs.items() if kv.lease == lease)
        kvs = {k: kv for k, kv in self.kvs.items() if kv.lease != lease}
        self._commit(kvs, [Event("delete", KeyValue(k, b"", 0, pending, 0, 0)) for k in doomed])

    def _commit(self, kvs: dict[str, KeyValue], events: list[Event]) -> None:
        if events:
            self.revision += 1
            self.kvs = kvs
            self.events.extend(events)

    def _holds(self, c: Compare) -> bool:
        kv = self.kvs.get(c.key)
        if c.target is Target.VALUE:
            if kv is None:
                return False
            actual: int | bytes = kv.value
        else:
            kv = kv or KeyValue(c.key, b"", 0, 0, 0, 0)
            actual = {
                Target.VERSION: kv.version,
                Target.CREATE: kv.create_revision,
                Target.MOD: kv.mod_revision,
                Target.LEASE: kv.lease,
            }[c.target]
        return OPS[c.op](actual, c.operand)

    @staticmethod
    def _refuse_double_writes(branch: Sequence[Op]) -> None:
        puts = [op.key for op in branch if isinstance(op, Put)]
        if len(puts) != len(set(puts)):
            raise ValueError("a key put twice")
        for op in branch:
            if isinstance(op, Delete) and any(_selects(op.key, op.prefix, k) for k in puts):
                raise ValueError("a key both put and deleted")

