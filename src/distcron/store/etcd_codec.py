"""The store's keys, comparisons and operations in the JSON of etcd's gateway, and back.

etcd's keys are bytes: a key is the store's prefix and the key in UTF-8, sent
in base64; a prefix is the range ``[prefix, prefix + 1)``. 64-bit integers go
as strings (JSON numbers lose precision past 2**53) and come back as strings,
left out when zero.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

from distcron.store.base import Compare, Delete, Event, Get, KeyValue, Op, Put, Target

Json = dict[str, Any]

_RESULT = {"==": "EQUAL", "!=": "NOT_EQUAL", "<": "LESS", ">": "GREATER"}
_FIELD = {
    Target.VERSION: "version",
    Target.CREATE: "create_revision",
    Target.MOD: "mod_revision",
    Target.VALUE: "value",
    Target.LEASE: "lease",
}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _int(message: Json, name: str) -> int:
    return int(message.get(name, 0))


def range_end(prefix: bytes) -> bytes:
    """etcd's end of the range of keys starting with ``prefix``: the prefix
    with its last byte below 0xff raised by one (``\\0``: every key from it on)."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return b"\0"
    return stripped[:-1] + bytes([stripped[-1] + 1])


class KeyCodec:
    """Keys under one prefix of the cluster's keyspace."""

    def __init__(self, prefix: str) -> None:
        self._prefix = prefix.encode()

    def key(self, key: str) -> str:
        return _b64(self._prefix + key.encode())

    def select(self, key: str, prefix: bool) -> Json:
        """The ``key`` / ``range_end`` fields selecting one key or a prefix."""
        if not prefix:
            return {"key": self.key(key)}
        start = self._prefix + key.encode()
        # The empty key is not a key to etcd: "\0" to "\0" is every key.
        return {"key": _b64(start or b"\0"), "range_end": _b64(range_end(start))}

    def strip(self, raw: str) -> str:
        data = base64.b64decode(raw)
        assert data.startswith(self._prefix), "etcd answered a key outside the prefix"
        return data[len(self._prefix) :].decode()

    def kv(self, message: Json) -> KeyValue:
        return KeyValue(
            self.strip(message["key"]),
            base64.b64decode(message.get("value", "")),
            _int(message, "create_revision"),
            _int(message, "mod_revision"),
            _int(message, "version"),
            _int(message, "lease"),
        )

    def kvs(self, range_response: Json) -> tuple[KeyValue, ...]:
        return tuple(self.kv(m) for m in range_response.get("kvs", ()))

    def event(self, message: Json) -> Event:
        kv = message["kv"]
        if message.get("type") == "DELETE":
            key = self.strip(kv["key"])
            return Event("delete", KeyValue(key, b"", 0, _int(kv, "mod_revision"), 0, 0))
        return Event("put", self.kv(kv))

    def compare(self, c: Compare) -> Json:
        operand = _b64(c.operand) if isinstance(c.operand, bytes) else str(c.operand)
        return {
            "key": self.key(c.key),
            "target": c.target.name,
            "result": _RESULT[c.op],
            _FIELD[c.target]: operand,
        }

    def op(self, op: Op) -> Json:
        if isinstance(op, Put):
            put = {"key": self.key(op.key), "value": _b64(op.value)}
            if op.lease:
                put["lease"] = str(op.lease)
            return {"request_put": put}
        if isinstance(op, Get):
            return {"request_range": self.select(op.key, op.prefix)}
        return {"request_delete_range": self.select(op.key, op.prefix)}

    def txn(self, compare: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op]) -> Json:
        return {
            "compare": [self.compare(c) for c in compare],
            "success": [self.op(op) for op in success],
            "failure": [self.op(op) for op in failure],
        }

    def results(
        self, ops: Sequence[Op], responses: Sequence[Json]
    ) -> tuple[tuple[KeyValue, ...] | int | None, ...]:
        """What each operation of the branch that ran gave (see TxnResult)."""
        results: list[tuple[KeyValue, ...] | int | None] = []
        for op, response in zip(ops, responses, strict=True):
            if isinstance(op, Get):
                results.append(self.kvs(response["response_range"]))
            elif isinstance(op, Delete):
                results.append(_int(response["response_delete_range"], "deleted"))
            else:
                results.append(None)
        return tuple(results)


def revision_of(message: Json) -> int:
    """The store revision in an answer's header."""
    return _int(message.get("header", {}), "revision")
