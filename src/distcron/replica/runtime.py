"""A replica: joins the cluster, campaigns, leads or follows, until told to stop.

On failure:

- Lease lost (store unreachable past the TTL, or the process was paused):
  the leader term is cancelled at once, the replica takes a new lease and
  campaigns again as a newcomer.
- Store unreachable while following: retried with a short backoff; the state
  mirror (:mod:`distcron.replica.mirror`) re-reads the store and watches on.
- The store's file removed or replaced (SQLite; :meth:`Store.wait_fault`):
  the replica stops leading at once and campaigns no more; it keeps serving
  its API, whose ``/healthz`` says why, until it is stopped. Restarted, it
  opens whatever file is then at the path.
- Another live replica of a one-machine store (SQLite) keeps its local runs
  elsewhere (a different ``--data-dir``): this one refuses to start
  (ConfigError), since after a takeover each would record the other's
  finished runs ``unknown``.
- A term that ends while the lease lives (a guarded write rejected, the
  state mirror late): the replica resigns, deleting its leader key, before it
  campaigns again, so the key never names a replica that does not lead.
- Its wall clock off from the other replicas' by more than
  ``max_clock_skew`` (:mod:`distcron.replica.clocks`): it does not campaign,
  and a leader ends its term and resigns, so that nothing launches by a
  wrong clock.
- The leader cut off from the store: etcd may keep its lease (and key)
  seconds past the TTL; a follower that has not heard the leader republish
  its registration for a TTL deposes it (see
  :meth:`~distcron.replica.membership.Membership.depose`), so the handover
  takes the TTL, not the store's lease bookkeeping.
- Told to stop (SIGTERM): a leader resigns at once, so a follower takes over
  without waiting for the lease to run out; runs in progress are left to the
  next leader.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

from distcron import __version__
from distcron.clock import Clock
from distcron.errors import ConfigError, NotLeader, StoreError
from distcron.executors.base import Executor
from distcron.metrics import Metrics
from distcron.notify.senders import Smtp
from distcron.replica.clocks import (
    DEFAULT_MAX_CLOCK_SKEW,
    PUBLISH_EVERY,
    ClockCheck,
    ClockWatch,
)
from distcron.replica.leader import LeaderTerm
from distcron.replica.membership import Membership
from distcron.replica.mirror import StateMirror
from distcron.replica.retention import DEFAULT_HISTORY
from distcron.scheduler.policy import STAGE_LEAD
from distcron.store import Store
from distcron.store.identity import store_identity
from distcron.store.layout import REPLICAS, leader_id_of

log = logging.getLogger("distcron.replica")

_RETRY_DELAY = 0.5
# A leader unheard for its TTL and this long is deposed (see Membership.depose);
# how often a follower looks again while it waits for that.
_SILENCE_MARGIN = 0.25
_SILENCE_POLL = 0.05
# How often a replica measures its own lag, and how long it waits for its
# mirror to reach the store's revision before counting the difference as lag.
_LAG_EVERY = 5.0
_LAG_PATIENCE = 1.0


@dataclass(frozen=True, slots=True)
class ReplicaConfig:
    replica_id: str
    listen: str
    lease_ttl: float = 3.0
    history: int = DEFAULT_HISTORY
    stage_lead: float = STAGE_LEAD
    smtp: Smtp | None = None  # where mail notifications go out
    max_clock_skew: float = DEFAULT_MAX_CLOCK_SKEW  # 0: clocks are not compared


def default_replica_id(listen: str) -> str:
    return f"{socket.gethostname()}-{listen.rsplit(':', 1)[-1]}"


class Replica:
    """One scheduler replica. Also the ``ReplicaView`` the API reads."""

    def __init__(self, store: Store, executors: Mapping[str, Executor], config: ReplicaConfig,
                 clock: Clock, metrics: Metrics) -> None:
        self.store = store
        self.executors = executors
        self.config = config
        self.clock = clock
        self.metrics = metrics
        self.replica_id = config.replica_id
        self.listen = config.listen
        self._fence: int | None = None
        self._store_id: str | None = None
        self._store_problem: str | None = None
        self._leader_changes = 0
        self._started_at = clock.now()
        self.mirror = StateMirror(store)
        local = executors.get("local")
        self._runs_at = local.location if local is not None else None
        self.membership = Membership(
            store, config.replica_id,
            {"listen": config.listen, "host": socket.gethostname(),
             "started_at": self._started_at.isoformat(),
             "version": __version__,
             **({"runs": self._runs_at} if self._runs_at else {})},
            config.lease_ttl, clock,
            # Republished as a heartbeat with the wall time, across machines: one
            # machine's replicas share its clock and no partition cuts them apart,
            # so there the registration is written once and the store stays idle.
            publish_every=0.0 if store.one_machine else min(PUBLISH_EVERY,
                                                            config.lease_ttl / 4))
        self._checked_neighbours = False
        self.clocks = ClockWatch(ClockCheck(config.replica_id, config.max_clock_skew, clock),
                                 self.mirror, metrics)

    @property
    def is_leader(self) -> bool:
        return self._fence is not None

    @property
    def fence(self) -> int | None:
        return self._fence

    @property
    def store_problem(self) -> str | None:
        """Why this replica stopped using its store (its file replaced), or None."""
        return self._store_problem

    @property
    def leader_changes(self) -> int:
        return self._leader_changes

    @property
    def clock_skew(self) -> float | None:
        return self.clocks.verdict.skew

    @property
    def clock_problem(self) -> str | None:
        return self.clocks.verdict.problem

    @property
    def applied_revision(self) -> int:
        """The store revision this replica's state has caught up with."""
        return self.mirror.revision

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set."""
        self.metrics.is_leader.set(0)
        halt = asyncio.Event()  # told to stop, or the store can no longer be used
        background = [asyncio.create_task(self.mirror.run(), name="state-mirror"),
                      asyncio.create_task(self._measure_lag(), name="measure-lag"),
                      asyncio.create_task(self._halt_when(stop, halt), name="halt-on-stop"),
                      asyncio.create_task(self._watch_store(halt), name="watch-store"),
                      asyncio.create_task(self.clocks.follow(), name="clock-samples"),
                      asyncio.create_task(self.clocks.judge_every(PUBLISH_EVERY),
                                          name="clock-verdict")]
        try:
            await self._serve(halt)
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
        if not stop.is_set():
            await stop.wait()  # the API stays up, saying why, until told to stop
        log.info("event=stopped replica=%s", self.replica_id)

    @staticmethod
    async def _halt_when(stop: asyncio.Event, halt: asyncio.Event) -> None:
        await stop.wait()
        halt.set()

    async def _watch_store(self, halt: asyncio.Event) -> None:
        reason = await self.store.wait_fault()
        self._store_problem = reason
        log.error("event=store_unusable replica=%s leader=%s fence=%s reason=%r action=%r",
                  self.replica_id, self.is_leader, self._fence, reason,
                  "stopped leading and campaigning; restart the replica")
        halt.set()

    async def _serve(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                if self._store_id is None:
                    self._store_id = await store_identity(self.store)
                await self.membership.join()
                if not self._checked_neighbours:
                    await self._check_neighbours()
                    self._checked_neighbours = True
                await self._serve_term(stop)
            except StoreError as exc:
                log.warning("event=store_error replica=%s error=%r", self.replica_id, str(exc))
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(_RETRY_DELAY):
                        await stop.wait()
            finally:
                await self.membership.leave()

    async def _check_neighbours(self) -> None:
        """Refuse to run beside a live replica of this machine whose local runs
        are in another directory: a run's status is read where it was started,
        so after a takeover each would record the other's finished runs
        ``unknown``. Refusing, rather than looking in every replica's directory,
        keeps each launch id's one start in one executor's directory (its
        idempotency), and a dead replica's directory may be gone. Only for a
        one-machine store: replicas of etcd may share a host in tests.
        Checked once registered, so that of two starting together at least the
        second sees the first."""
        if self._runs_at is None or not self.store.one_machine:
            return
        host = socket.gethostname()
        for kv in (await self.store.range(REPLICAS))[0]:
            try:
                other = json.loads(kv.value)
            except ValueError:
                continue
            if (not isinstance(other, dict) or other.get("id") == self.replica_id
                    or other.get("host") != host or not other.get("runs")
                    or other["runs"] == self._runs_at):
                continue
            raise ConfigError(
                f"replica {self.replica_id!r} would keep its local runs in {self._runs_at} "
                f"but replica {other.get('id')!r} on this machine, on the same store, keeps "
                f"them in {other['runs']}: after a takeover each would record the other's "
                "finished runs unknown. Give every replica of this machine the same "
                "--data-dir")

    async def _measure_lag(self) -> None:
        while True:
            with contextlib.suppress(StoreError):
                revision = await self.store.revision()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(_LAG_PATIENCE):
                        await self.mirror.caught_up(revision)
                self.metrics.store_revision.set(revision)
                self.metrics.replica_lag.set(max(0, revision - self.mirror.revision))
                self.metrics.replicas.set(len(self.mirror.held(REPLICAS)))
            await self.clock.sleep(_LAG_EVERY)

    async def _serve_term(self, stop: asyncio.Event) -> None:
        """Campaign, lead or follow, while this lease lives."""
        membership = self.membership
        while not stop.is_set() and not membership.lost.is_set():
            if self.mirror.revision == 0:
                # Not ready to lead before the state is read (a late or wiped replica).
                await self._until_any(stop, membership.lost, self.mirror.caught_up(1))
                continue
            if not membership.may_campaign():
                # A late grant or renewal: win nothing under a lease about to end.
                await self._until_any(stop, membership.lost, membership.renewed())
                continue
            if self.clocks.verdict.problem is not None:
                await self._until_any(stop, membership.lost, self.clocks.until_fit())
                continue
            fence = await membership.campaign()
            if fence is None:
                patience = self.config.lease_ttl
                silent = self._leader_silence()
                if silent is not None:
                    holder, revision, remaining = silent
                    leader = membership.leader_seen
                    if (remaining <= 0 and leader is not None
                            and await membership.depose(leader, holder, revision)):
                        continue
                    patience = min(patience, max(remaining, _SILENCE_POLL))
                await self._until_any(stop, membership.lost,
                                      membership.wait_for_vacancy(patience))
                continue
            await self._lead(fence, stop)

    def _leader_silence(self) -> tuple[str, int, float] | None:
        """For the leader a lost campaign found: its id, the revision of its
        registration last heard, and the seconds left until it counts as
        silent; None when not known, or when this replica's own
        registrations do not arrive either (its own view is what is late)."""
        leader = self.membership.leader_seen
        if leader is None or leader.lease == self.membership.lease:
            return None
        holder = leader_id_of(leader.value)
        heard, own = self.clocks.heard_at.get(holder), self.clocks.heard_at.get(
            self.replica_id)
        now = self.clock.monotonic()
        if heard is None or own is None or now - own[0] > 2 * self.membership.publish_every:
            return None
        at, revision = heard
        return holder, revision, at + self.config.lease_ttl + _SILENCE_MARGIN - now

    async def _lead(self, fence: int, stop: asyncio.Event) -> None:
        assert self._store_id is not None  # read before the first campaign
        self._fence = fence
        self._leader_changes += 1
        self.metrics.is_leader.set(1)
        self.metrics.leader_changes.inc()
        log.info("event=became_leader replica=%s fence=%d store_id=%s", self.replica_id, fence,
                 self._store_id)
        term = LeaderTerm(self.store, self.mirror, self.executors, fence, self.replica_id,
                          self.clock, self.metrics, self.membership.lease_valid,
                          self.config.history, catch_up_timeout=self.config.lease_ttl,
                          stage_lead=self.config.stage_lead, smtp=self.config.smtp,
                          store_id=self._store_id)
        try:
            await self._until_any(stop, self.membership.lost, term.run(), self.clocks.unfit)
            if self.clocks.unfit.is_set():
                log.warning("event=stepped_down replica=%s fence=%d reason=%r",
                            self.replica_id, fence, self.clocks.verdict.problem)
        except NotLeader as exc:
            log.warning("event=lost_leadership replica=%s error=%r", self.replica_id, str(exc))
        finally:
            self._fence = None
            self.metrics.is_leader.set(0)
            if not self.membership.lost.is_set():
                # The lease lives on: the key would stay, naming a leader that
                # leads no term, and keeping every other replica out.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.config.lease_ttl):
                        await self.membership.resign(fence)
            log.info("event=leadership_ended replica=%s fence=%d", self.replica_id, fence)

    @staticmethod
    async def _until_any(stop: asyncio.Event, lost: asyncio.Event,
                         work: Coroutine[Any, Any, None], *also: asyncio.Event) -> None:
        """Run ``work`` until it ends or any event is set; its errors propagate."""
        task = asyncio.create_task(work)
        waiters = {asyncio.create_task(event.wait()) for event in (stop, lost, *also)}
        try:
            await asyncio.wait({task, *waiters}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
