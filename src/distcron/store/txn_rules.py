"""What a transaction cannot mean, refused the same way by every backend
(as etcd refuses it), before anything is sent or written."""

from __future__ import annotations

from collections.abc import Sequence
from typing import get_args

from distcron.store.base import Compare, CompareOp, Delete, Op, Put, Target

_COMPARE_OPS = frozenset(get_args(CompareOp))


def check_txn(compare: Sequence[Compare], *branches: Sequence[Op]) -> None:
    """Refuse, as etcd does, what a transaction cannot mean: empty keys, operands
    of the wrong type, and a branch that writes one key twice."""
    for c in compare:
        check_key(c.key)
        wants = bytes if c.target is Target.VALUE else int
        if not isinstance(c.operand, wants) or c.op not in _COMPARE_OPS:
            raise ValueError(
                f"compare on {c.key!r}: {c.target.value} {c.op} {c.operand!r} "
                f"(the operand of {c.target.value} must be {wants.__name__})"
            )
    for ops in branches:
        puts: set[str] = set()
        deletes: list[Delete] = []
        for op in ops:
            if isinstance(op, Put):
                check_key(op.key)
                if op.key in puts:
                    raise ValueError(f"txn puts {op.key!r} twice")
                puts.add(op.key)
            elif not op.prefix:
                check_key(op.key)
            if isinstance(op, Delete):
                deletes.append(op)
        for d in deletes:
            for key in puts:
                if key == d.key or (d.prefix and key.startswith(d.key)):
                    raise ValueError(f"txn both puts and deletes {key!r}")


def check_key(key: str) -> None:
    if not key:
        raise ValueError("empty key (only a prefix may be empty)")
