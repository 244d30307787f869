"""A replica's lease, its registration, and the leader election.

One lease per replica carries both its registration (``replicas/<id>``) and,
while it leads, the leader key. The fence is the leader key's
``create_revision``: every leader write compares it, so a replica whose lease
ran out cannot write even if it does not know yet.

On failure:

- The keepalive loop renews every ``ttl / 3``. A renewal counts from the moment
  it was *sent*, so ``lease_valid()`` turns false no later than the store's own
  expiry. A paused process (SIGSTOP) wakes with ``lease_valid()`` false, since
  it is measured on the monotonic clock, and launches nothing before finding out.
- The store unreachable: renewals are retried until the lease would have
  expired; then :attr:`lost` is set. ``LeaseExpired`` sets it at once.
- Clock: only ``Clock.monotonic`` is used for the lease; wall time plays no part.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

from distcron.clock import Clock
from distcron.errors import LeaseExpired, StoreUnavailable
from distcron.store import Compare, Delete, Get, Put, Store
from distcron.store.layout import LEADER, replica_key

log = logging.getLogger("distcron.replica")


class Membership:
    """This replica's lease-backed presence in the cluster."""

    def __init__(self, store: Store, replica_id: str, registration: dict[str, object],
                 ttl: float, clock: Clock) -> None:
        self.store = store
        self.replica_id = replica_id
        self.registration = registration
        self.ttl = ttl
        self.clock = clock
        self.lease = 0
        self.lost = asyncio.Event()
        self._valid_until = 0.0
        self._keepalive: asyncio.Task[None] | None = None

    def lease_valid(self, margin: float = 0.0) -> bool:
        """The lease is certainly still alive (``margin`` seconds from now)."""
        return self.lease != 0 and self.clock.monotonic() + margin < self._valid_until

    async def join(self) -> None:
        """Take a new lease and register under it."""
        sent = self.clock.monotonic()
        self.lease = await self.store.lease_grant(self.ttl)
        self._valid_until = sent + self.ttl
        self.lost = asyncio.Event()
        body = json.dumps({"id": self.replica_id, **self.registration}).encode()
        await self.store.put(replica_key(self.replica_id), body, lease=self.lease)
        self._keepalive = asyncio.create_task(self._keep_alive(), name="lease-keepalive")
        log.info("event=joined replica=%s lease=%#x ttl=%s", self.replica_id, self.lease,
                 self.ttl)

    async def campaign(self) -> int | None:
        """Become leader if there is none; returns the fence, or None."""
        body = json.dumps({"id": self.replica_id, **self.registration}).encode()
        result = await self.store.txn(
            [Compare.missing(LEADER)], [Put(LEADER, body, lease=self.lease)], [Get(LEADER)])
        if not result.succeeded:
            return None
        return result.revision

    async def wait_for_vacancy(self, patience: float) -> None:
        """Return when the leader key is gone, the lease is lost, or after ``patience``
        seconds (so the caller campaigns again even if a delete event was missed)."""
        kv = await self.store.get(LEADER)
        if kv is None:
            return
        watch = self.store.watch(LEADER, kv.mod_revision + 1)
        try:
            async with asyncio.timeout(patience):
                async for batch in watch:
                    if any(e.type == "delete" and e.kv.key == LEADER for e in batch.events):
                        return
                    if self.lost.is_set():
                        return
        except TimeoutError:
            return
        finally:
            await watch.aclose()

    async def resign(self, fence: int) -> None:
        """Give up leadership at once, so a follower need not wait for the lease."""
        with contextlib.suppress(StoreUnavailable):
            await self.store.txn([Compare.created_at(LEADER, fence)], [Delete(LEADER)])

    async def leave(self) -> None:
        """Stop renewing and revoke the lease (which also drops leadership)."""
        if self._keepalive is not None:
            self._keepalive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keepalive
        if self.lease:
            with contextlib.suppress(StoreUnavailable):
                await self.store.lease_revoke(self.lease)
        self.lease = 0

    async def _keep_alive(self) -> None:
        interval = self.ttl / 3
        while True:
            await self.clock.sleep(interval)
            sent = self.clock.monotonic()
            try:
                async with asyncio.timeout(interval):
                    await self.store.lease_keepalive(self.lease)
                self._valid_until = sent + self.ttl
            except LeaseExpired:
                log.warning("event=lease_lost replica=%s lease=%#x", self.replica_id,
                            self.lease)
                self.lost.set()
                return
            except (StoreUnavailable, TimeoutError) as exc:
                if not self.lease_valid():
                    log.warning("event=lease_lost replica=%s reason=%r", self.replica_id,
                                str(exc))
                    self.lost.set()
                    return
                log.info("event=keepalive_failed replica=%s error=%r", self.replica_id,
                         str(exc))
