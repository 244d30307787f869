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
from distcron.replica.leader import LeaderTerm
from distcron.replica.membership import Membership
from distcron.replica.mirror import StateMirror
from distcron.replica.retention import DEFAULT_HISTORY
from distcron.scheduler.policy import STAGE_LEAD
from distcron.store import Store
from distcron.store.identity import store_identity
from distcron.store.layout import REPLICAS

log = logging.getLogger("distcron.replica")

_RETRY_DELAY = 0.5
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
            config.lease_ttl, clock)
        self._checked_neighbours = False

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
                      asyncio.create_task(self._watch_store(halt), name="watch-store")]
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
            fence = await membership.campaign()
            if fence is None:
                await self._until_any(stop, membership.lost,
                                      membership.wait_for_vacancy(self.config.lease_ttl))
                continue
            await self._lead(fence, stop)

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
            await self._until_any(stop, self.membership.lost, term.run())
        except NotLeader as exc:
            log.warning("event=lost_leadership replica=%s error=%r", self.replica_id, str(exc))
        finally:
            self._fence = None
            self.metrics.is_leader.set(0)
            if stop.is_set():
                await self.membership.resign(fence)
            log.info("event=leadership_ended replica=%s fence=%d", self.replica_id, fence)

    @staticmethod
    async def _until_any(stop: asyncio.Event, lost: asyncio.Event,
                         work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` until it ends or either event is set; its errors propagate."""
        task = asyncio.create_task(work)
        waiters = {asyncio.create_task(stop.wait()), asyncio.create_task(lost.wait())}
        try:
            await asyncio.wait({task, *waiters}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
