"""A replica's lease, its registration, and the leader election.

One lease per replica carries both its registration (``replicas/<id>``) and,
while it leads, the leader key. The fence is the leader key's
``create_revision``: every leader write compares it, so a replica whose lease
ran out cannot write even if it does not know yet.

On failure:

- A grant answered late (the store paused, or an endpoint timed out and the
  grant was sent again to the next) leaves less of the TTL certain than was
  asked, or none: :meth:`join` renews the lease at once (or gives up and the
  caller joins again) until at least half the TTL is certain, so that the
  replica never writes a key under a lease it cannot count on.
- A replica campaigns only while its lease is certainly valid for a third of
  the TTL, and a leader key under its own lease that no term of its own uses
  (a term that ended while the lease lived, and whose resignation was lost) is
  deleted and campaigned for again: the replica keeps that lease alive, so
  waiting for the key to go would wait for ever.
- The keepalive loop renews every ``ttl / 3``; a renewal may take as long
  as the lease is certain, so that the store can fail over to another
  endpoint meanwhile. A renewal counts from the moment
  it was *sent*, so ``lease_valid()`` turns false no later than the store's own
  expiry. A paused process (SIGSTOP) wakes with ``lease_valid()`` false, since
  it is measured on the monotonic clock, and launches nothing before finding out.
- The store unreachable: renewals are retried until the lease would have
  expired; then :attr:`lost` is set. ``LeaseExpired`` sets it at once.
- The leader cut off from the store: etcd may keep its lease a while past
  the TTL (a new raft leader gives every lease a full TTL again), so the
  leader key would outlive the leader's own certainty by seconds. The
  registration is republished every ``publish_every`` seconds, and a
  replica counts as certain of its lease only while its last successful
  republication was *sent* less than a TTL ago, as well. A follower that has
  seen no republication of the leader's for a TTL (and a margin) on its own
  monotonic clock may :meth:`depose` it: delete the leader key, guarded by
  the key's fence and by the leader's registration being still the one it
  saw. The leader has stopped acting by then; if it had republished since,
  the guard fails and nothing is deleted. Fencing keeps every promise
  either way: a deposed leader's writes fail.
- Clock: only ``Clock.monotonic`` is used for the lease and republications.
  The registration carries the wall time at which it was written (``wall``),
  so that replicas can compare their clocks (:mod:`distcron.replica.clocks`);
  a republication that fails is tried again at the next period.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

from distcron.clock import Clock
from distcron.errors import LeaseExpired, StoreError, StoreUnavailable
from distcron.store import Compare, Delete, Get, KeyValue, Put, Store
from distcron.store.layout import LEADER, replica_key

log = logging.getLogger("distcron.replica")

# How much of the TTL must be certain after joining, and before campaigning.
_JOINED_CERTAIN = 1 / 2
_CAMPAIGN_CERTAIN = 1 / 3
# Renewals tried at once after a grant answered too late to use, before giving up.
_JOIN_RENEWALS = 3


class Membership:
    """This replica's lease-backed presence in the cluster."""

    def __init__(self, store: Store, replica_id: str, registration: dict[str, object],
                 ttl: float, clock: Clock, publish_every: float = 0.0) -> None:
        self.store = store
        self.replica_id = replica_id
        self.registration = registration
        self.ttl = ttl
        self.clock = clock
        self.publish_every = publish_every  # 0: the registration is written once
        self.lease = 0
        self.lost = asyncio.Event()
        self._valid_until = 0.0
        self._published_until = 0.0  # a TTL after the last republication that succeeded
        self.leader_seen: KeyValue | None = None  # the leader key a lost campaign found
        self._renewed = asyncio.Event()
        self._keepalive: asyncio.Task[None] | None = None
        self._publisher: asyncio.Task[None] | None = None

    def lease_valid(self, margin: float = 0.0) -> bool:
        """The lease is certainly still alive (``margin`` seconds from now), and
        no follower may have deposed this replica for silence."""
        until = self._valid_until
        if self.publish_every > 0:
            until = min(until, self._published_until)
        return self.lease != 0 and self.clock.monotonic() + margin < until

    def _renewal_certain(self, margin: float) -> bool:
        return self.clock.monotonic() + margin < self._valid_until

    async def join(self) -> None:
        """Take a new lease, make sure of it, and register under it (see the
        module docstring). Raises StoreError (LeaseExpired, StoreUnavailable);
        a lease granted before that is revoked by :meth:`leave`."""
        self.lost = asyncio.Event()
        sent = self.clock.monotonic()
        self.lease = await self.store.lease_grant(self.ttl)
        self._valid_until = sent + self.ttl
        renewals = 0
        while not self._renewal_certain(self.ttl * _JOINED_CERTAIN):
            if renewals == _JOIN_RENEWALS:
                raise StoreUnavailable(
                    f"lease {self.lease:#x}: neither its grant nor {renewals} renewals were "
                    f"answered within half its TTL ({self.ttl:g} s)")
            log.info("event=lease_renewed_at_join replica=%s lease=%#x late_by=%.3f",
                     self.replica_id, self.lease, self.clock.monotonic() - sent)
            renewals += 1
            sent = self.clock.monotonic()
            await self.store.lease_keepalive(self.lease)
            self._valid_until = sent + self.ttl
        await self._register()
        self._keepalive = asyncio.create_task(self._keep_alive(), name="lease-keepalive")
        if self.publish_every > 0:
            self._publisher = asyncio.create_task(self._republish(), name="republish")
        log.info("event=joined replica=%s lease=%#x ttl=%s", self.replica_id, self.lease,
                 self.ttl)

    def may_campaign(self) -> bool:
        """The lease is certain for long enough to win a key and use it."""
        return self.lease_valid(self.ttl * _CAMPAIGN_CERTAIN)

    async def renewed(self) -> None:
        """Return after the lease's next successful renewal."""
        await self._renewed.wait()

    async def campaign(self) -> int | None:
        """Become leader if there is none; returns the fence, or None (another
        leads, or the lease is not certain enough: see :meth:`may_campaign`)."""
        body = json.dumps({"id": self.replica_id, **self.registration}).encode()
        for _ in range(2):
            if not self.may_campaign():
                return None
            result = await self.store.txn(
                [Compare.missing(LEADER)], [Put(LEADER, body, lease=self.lease)],
                [Get(LEADER)])
            if result.succeeded:
                self.leader_seen = None
                return result.revision
            found = result.results[0]
            assert isinstance(found, tuple)
            self.leader_seen = found[0] if found else None
            if not found or found[0].lease != self.lease:
                return None
            # Our own key, which no term of ours uses (the caller campaigns only
            # when it leads no term): it would never go while we renew the lease.
            log.warning("event=own_leader_key_removed replica=%s fence=%d",
                        self.replica_id, found[0].create_revision)
            await self.resign(found[0].create_revision)
        return None

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

    async def depose(self, leader: KeyValue, holder: str, registration: int) -> bool:
        """Delete the leader key ``leader`` of replica ``holder``, if it and the
        holder's registration (at revision ``registration``) are unchanged
        (see the module docstring); whether it was deleted."""
        result = await self.store.txn(
            [Compare.created_at(LEADER, leader.create_revision),
             Compare.modified_at(replica_key(holder), registration)],
            [Delete(LEADER)])
        if result.succeeded:
            log.warning("event=silent_leader_deposed replica=%s leader=%s fence=%d",
                        self.replica_id, holder, leader.create_revision)
        return result.succeeded

    async def resign(self, fence: int) -> None:
        """Give up leadership at once, so a follower need not wait for the lease."""
        with contextlib.suppress(StoreUnavailable):
            await self.store.txn([Compare.created_at(LEADER, fence)], [Delete(LEADER)])

    async def leave(self) -> None:
        """Stop renewing and revoke the lease (which also drops leadership)."""
        for task in (self._keepalive, self._publisher):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._keepalive = self._publisher = None
        if self.lease:
            with contextlib.suppress(StoreUnavailable):
                await self.store.lease_revoke(self.lease)
        self.lease = 0

    async def _register(self) -> None:
        sent = self.clock.monotonic()
        body = {"id": self.replica_id, **self.registration,
                "wall": self.clock.now().timestamp()}
        await self.store.put(replica_key(self.replica_id), json.dumps(body).encode(),
                             lease=self.lease)
        self._published_until = sent + self.ttl

    async def _republish(self) -> None:
        while True:
            await self.clock.sleep(self.publish_every)
            if not self._renewal_certain(0.0):
                continue
            try:
                await self._register()
            except StoreError as exc:
                log.info("event=republish_failed replica=%s error=%r", self.replica_id,
                         str(exc))

    async def _keep_alive(self) -> None:
        interval = self.ttl / 3
        # The first renewal when two thirds of the TTL are left (at once after a
        # join that left less), then every third of the TTL.
        delay = min(interval, max(0.0, self._valid_until - self.clock.monotonic()
                                  - 2 * interval))
        while True:
            await self.clock.sleep(delay)
            delay = interval
            sent = self.clock.monotonic()
            try:
                # As long as the lease is certain: the store may fail over meanwhile.
                async with asyncio.timeout(max(interval, self._valid_until - sent)):
                    await self.store.lease_keepalive(self.lease)
                self._valid_until = sent + self.ttl
                self._renewed.set()
                self._renewed = asyncio.Event()
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
