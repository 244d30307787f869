"""A real store with someone else's write run just before one of its transactions:
how the tests make a race happen at the one moment that matters."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

from distcron.store import Compare, KeyValue, Op, Store, TxnResult, WatchBatch


class InterposingStore(Store):
    """Delegates everything to ``inner``; before the next transaction whose
    writes ``when`` accepts (any, by default), runs ``before_txn`` once."""

    def __init__(self, inner: Store,
                 when: Callable[[Sequence[Op]], bool] = lambda success: True) -> None:
        self.inner = inner
        self.when = when
        self.before_txn: Callable[[Store], Awaitable[object]] | None = None

    async def get(self, key: str) -> KeyValue | None:
        return await self.inner.get(key)

    async def range(self, prefix: str) -> tuple[list[KeyValue], int]:
        return await self.inner.range(prefix)

    async def revision(self) -> int:
        return await self.inner.revision()

    async def txn(self, compare: Sequence[Compare], success: Sequence[Op],
                  failure: Sequence[Op] = ()) -> TxnResult:
        if self.before_txn is not None and self.when(success):
            interloper, self.before_txn = self.before_txn, None
            await interloper(self.inner)
        return await self.inner.txn(compare, success, failure)

    async def lease_grant(self, ttl: float) -> int:
        return await self.inner.lease_grant(ttl)

    async def lease_keepalive(self, lease_id: int) -> float:
        return await self.inner.lease_keepalive(lease_id)

    async def lease_revoke(self, lease_id: int) -> None:
        await self.inner.lease_revoke(lease_id)

    def watch(self, prefix: str, start_revision: int) -> AsyncIterator[WatchBatch]:
        return self.inner.watch(prefix, start_revision)

    async def close(self) -> None:
        await self.inner.close()
