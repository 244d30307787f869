"""A worker's lease and its registration ``workers/<id>``.

The worker registers by writing :class:`~distcron.worker.protocol.WorkerInfo`
under a lease of its own, and only where no registration exists
(``Compare.missing``): two live processes that were given the same id cannot
both be registered, so at most one of them claims launches for that id. It
renews the lease every ``ttl / 3``, checks at each renewal that the key is
still its own, and rewrites the info when its running count changes (at most
once a second: a burst of launches changes it at every start and end) and every
``info_interval`` seconds for its load. Renewals and rewrites go on apart, so
that a rewrite the store is slow to answer never holds a renewal back.

On failure:

- **Lease loss.** ``lease_keepalive`` raises ``LeaseExpired``, the key is gone
  or holds another lease (someone deleted it), a guarded rewrite fails, or the
  claim guard found the registration gone (:meth:`Registration.mark_lost`):
  :meth:`Registration.alive` turns false at once, so the worker stops claiming,
  and the worker registers again under a new lease. Runs in progress are not
  touched; their reports are not tied to the lease.
- **Store unreachable.** Renewals are retried every ``ttl / 3``. A renewal
  counts from the moment it was *sent*, so :meth:`Registration.alive` turns
  false no later than the store's own expiry; past it the lease counts as lost.
  Registering again is retried until the store answers.
- **Restart.** The registration of a killed predecessor with the same id holds
  its key until its lease expires: the new process waits for that (at most one
  TTL) and logs ``event=registration_waiting``. Revoking on shutdown
  (:meth:`Registration.leave`) makes the key vanish at once instead.
- **Clock.** Only ``Clock.monotonic`` measures the lease; wall time only stamps
  ``started_at``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import distcron
from distcron.clock import Clock
from distcron.errors import Compacted, LeaseExpired, StoreUnavailable
from distcron.store import Compare, Put, Store, Target
from distcron.store.layout import worker_key
from distcron.timefmt import utc_iso
from distcron.worker.protocol import WorkerInfo

log = logging.getLogger("distcron.worker")

CHANGED_EVERY = 1.0  # seconds: a changed running count is rewritten at most this often


@dataclass(frozen=True)
class RegistrationConfig:
    worker_id: str
    slots: int
    tags: tuple[str, ...] = ()
    ttl: float = 3.0
    info_interval: float = 5.0  # how often the load is rewritten
    load_file: Path | None = None


def current_load(load_file: Path | None = None) -> float:
    """The load this worker reports: the number in ``load_file`` when one is
    given (an operator's own measure, e.g. written by a script), else the
    1-minute load average per CPU."""
    if load_file is not None:
        try:
            return float(load_file.read_text().strip())
        except (OSError, ValueError) as exc:
            log.warning("event=load_file_unreadable path=%s error=%r", load_file, str(exc))
    return round(os.getloadavg()[0] / (os.cpu_count() or 1), 3)


async def wait_event(event: asyncio.Event, clock: Clock, seconds: float) -> None:
    """Return when ``event`` is set, or after ``seconds`` of ``clock`` time."""
    waiter = asyncio.ensure_future(event.wait())
    sleeper = asyncio.ensure_future(clock.sleep(seconds))
    try:
        await asyncio.wait({waiter, sleeper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        sleeper.cancel()


class Registration:
    """The worker's lease-backed presence; see the module docstring.

    ``running`` tells the current running count; ``on_registered`` is called
    each time a (new) registration is in place, so the caller can claim again.
    """

    def __init__(self, store: Store, config: RegistrationConfig, clock: Clock,
                 running: Callable[[], int], on_registered: Callable[[], None]) -> None:
        self.store = store
        self.config = config
        self.clock = clock
        self.key = worker_key(config.worker_id)
        self.lease = 0
        self._running = running
        self._on_registered = on_registered
        self._started_at = utc_iso(clock.now())
        self._valid_until = 0.0
        self._lost = asyncio.Event()
        self._dirty = False
        self._wake = asyncio.Event()  # the info is to be rewritten

    def alive(self) -> bool:
        """Registered, and the lease certainly not expired yet."""
        return (self.lease != 0 and not self._lost.is_set()
                and self.clock.monotonic() < self._valid_until)

    def changed(self) -> None:
        """The running count changed: rewrite the info soon (not within
        CHANGED_EVERY seconds of the last rewrite)."""
        self._dirty = True
        self._wake.set()

    def mark_lost(self, lease: int, reason: str) -> None:
        """Someone found that registration under ``lease`` is gone. Ignored when
        it is about an older lease than the current one."""
        if lease == self.lease:
            self._lose(reason)

    def info(self) -> WorkerInfo:
        return WorkerInfo(
            id=self.config.worker_id, host=socket.gethostname(), slots=self.config.slots,
            tags=self.config.tags, running=self._running(),
            load=current_load(self.config.load_file),
            started_at=self._started_at, version=distcron.__version__, stages=True)

    async def run(self) -> None:
        """Register, hold the registration, and register again whenever it is
        lost; until cancelled."""
        while True:
            await self._register()
            self._on_registered()
            await self._hold()

    async def leave(self) -> None:
        """Revoke the lease: the registration vanishes at once. Best effort: if the
        store is unreachable, the lease expires by itself."""
        lease, self.lease = self.lease, 0
        if lease:
            with contextlib.suppress(StoreUnavailable):
                await self.store.lease_revoke(lease)
            log.info("event=unregistered worker=%s lease=%#x", self.config.worker_id, lease)

    def _lose(self, reason: str) -> None:
        if self._lost.is_set():
            return
        log.warning("event=lease_lost worker=%s lease=%#x reason=%r", self.config.worker_id,
                    self.lease, reason)
        self._lost.set()

    async def _register(self) -> None:
        patience = self.config.ttl / 3
        waiting_logged = False
        while True:
            try:
                holder = await self._try_register()
                if holder is None:
                    return
                if not waiting_logged:
                    # A predecessor killed less than a TTL ago, or a live process
                    # with the same id: both hold the key until their lease ends.
                    log.info("event=registration_waiting worker=%s reason=%r",
                             self.config.worker_id, "another registration holds the key")
                    waiting_logged = True
                await self._until_vacant(holder, patience)
                continue
            except (StoreUnavailable, LeaseExpired, Compacted) as exc:
                # LeaseExpired: the new lease ran out before the key was written
                # (the process stalled); start over with another.
                log.warning("event=register_failed worker=%s error=%r", self.config.worker_id,
                            str(exc))
            await self.clock.sleep(patience)

    async def _try_register(self) -> int | None:
        """Register; None when done, else the revision at which another
        registration was seen holding the key."""
        # A lease of ours from before (lost, or granted by an attempt that raised)
        # goes first, so that a registration it may still hold vanishes.
        await self.leave()
        holder = await self.store.get(self.key)
        if holder is not None:
            return holder.mod_revision
        sent = self.clock.monotonic()
        self.lease = await self.store.lease_grant(self.config.ttl)
        self._lost.clear()
        self._valid_until = sent + self.config.ttl
        self._dirty = False
        result = await self.store.txn(
            [Compare.missing(self.key)], [Put(self.key, self.info().to_json(), self.lease)])
        if not result.succeeded:
            await self.leave()
            return result.revision
        log.info("event=registered worker=%s lease=%#x ttl=%s slots=%s",
                 self.config.worker_id, self.lease, self.config.ttl, self.config.slots)
        return None

    async def _until_vacant(self, seen_at: int, patience: float) -> None:
        """Return when the key is deleted after revision ``seen_at``, or after
        ``patience`` seconds (the caller then looks again)."""
        watch = self.store.watch(self.key, seen_at + 1)
        try:
            async with asyncio.timeout(patience):
                async for batch in watch:
                    # A prefix watch: "workers/w1" also matches "workers/w10".
                    if any(e.type == "delete" and e.kv.key == self.key for e in batch.events):
                        return
        except TimeoutError:
            return
        finally:
            await watch.aclose()

    async def _hold(self) -> None:
        """Renew and rewrite until the registration is lost; the rewrites in a
        task of their own (see the module docstring)."""
        rewrites = asyncio.create_task(self._rewrites(), name="worker-info")
        try:
            await self._renewals()
        finally:
            rewrites.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await rewrites

    async def _renewals(self) -> None:
        """Renew every ``ttl / 3`` until the registration is lost."""
        interval = self.config.ttl / 3
        next_renewal = self.clock.monotonic() + interval
        while not self._lost.is_set():
            now = self.clock.monotonic()
            if now >= next_renewal:
                next_renewal = await self._renew() + interval
            else:
                await wait_event(self._lost, self.clock, next_renewal - now)

    async def _rewrites(self) -> None:
        """Rewrite the info every ``info_interval``, and once the running count
        changed, but not within CHANGED_EVERY seconds of the last rewrite."""
        # The registration wrote the info just now.
        interval = self.config.ttl / 3
        now = self.clock.monotonic()
        next_info, next_change = now + self.config.info_interval, now + CHANGED_EVERY
        while not self._lost.is_set():
            now = self.clock.monotonic()
            due = min(next_info, next_change) if self._dirty else next_info
            if now >= due:
                ok = await self._rewrite()
                done = self.clock.monotonic()
                # A failed rewrite is retried at the pace of renewals.
                next_info = done + (self.config.info_interval if ok else interval)
                next_change = done + (CHANGED_EVERY if ok else interval)
            else:
                self._wake.clear()
                await wait_event(self._wake, self.clock, due - now)

    async def _renew(self) -> float:
        """Renew the lease and check the key is still ours; returns when the renewal
        was sent."""
        sent = self.clock.monotonic()
        try:
            async with asyncio.timeout(self.config.ttl / 3):
                await self.store.lease_keepalive(self.lease)
                kv = await self.store.get(self.key)
        except LeaseExpired:
            self._lose("lease expired")
            return sent
        except (StoreUnavailable, TimeoutError) as exc:
            if not self.alive():
                self._lose(f"store unreachable past the lease: {exc}")
            else:
                log.info("event=keepalive_failed worker=%s error=%r", self.config.worker_id,
                         str(exc))
            return sent
        self._valid_until = sent + self.config.ttl
        if kv is None or kv.lease != self.lease:
            self._lose("registration key deleted or replaced")
        return sent

    async def _rewrite(self) -> bool:
        """Rewrite the info, guarded by our lease on the key; False if it failed."""
        self._dirty = False
        try:
            result = await self.store.txn(
                [Compare(self.key, Target.LEASE, "==", self.lease)],
                [Put(self.key, self.info().to_json(), self.lease)])
        except LeaseExpired:
            self._lose("lease expired")
            return False
        except StoreUnavailable as exc:
            log.info("event=info_write_failed worker=%s error=%r", self.config.worker_id,
                     str(exc))
            self._dirty = True
            return False
        if not result.succeeded:
            self._lose("registration key deleted or replaced")
            return False
        return True
