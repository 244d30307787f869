"""Whether this replica's wall clock agrees with the other replicas' clocks.

Wall time decides which slots are due, so a leader whose clock is fast
launches early (issue 13.7). Every replica republishes its registration every
:data:`PUBLISH_EVERY` seconds with ``wall``, its wall time at the write. Each
replica receives the others' through its state mirror's watch and takes
``offset = wall - (its own wall time at receipt)``: how far the other's clock
is ahead of its own, less the delivery delay. A delay only ever makes an
offset look smaller, so the largest of a replica's last :data:`SAMPLES`
offsets is the estimate: deliveries held back by a store pause drop out.

The reference is the median of every live replica's clock, this one's own
included (offset 0). This replica's *skew* is how far its clock is ahead of
that median (with an even count, of the mean of the middle two). Beyond the
bound (``[serve] max_clock_skew``, 2 s by default; 0 turns the check off) it
does not campaign, and it steps down if it leads. With an odd count, or an
even one whose two middle clocks agree, the verdict is clear: one skewed
clock of three is outvoted. When the clocks split evenly, with this one
agreeing with one middle clock and not the other (two replicas 30 s apart,
say, after the third died), nothing says which side is right: the verdict
stays what it was (the replica the majority found right stays fit), and is
*unfit* if there was none. Shown in ``/healthz``, ``/status`` and the
``distcron_clock_skew_seconds`` and ``distcron_clock_unfit`` metrics.

On failure:

- A replica that publishes nothing (an older version, or stalled) is
  ignored once its last sample is :data:`STALE_AFTER` seconds old; one
  that has not been heard since this replica started is waited for during
  :data:`FIRST_HEARING` seconds, in which this replica does not campaign
  (a leader goes on leading meanwhile).
- A publication that fails (the store unreachable) is tried again at the
  next period; the lease keepalive is what notices a store that is gone.
- Clock: wall time is what is compared; monotonic time ages the samples.
"""

from __future__ import annotations

import asyncio
import json
import logging
import statistics
from collections import deque
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from distcron.clock import Clock
from distcron.errors import StoreError
from distcron.metrics import Metrics
from distcron.replica.mirror import StateMirror
from distcron.store import WatchBatch
from distcron.store.layout import REPLICAS, name_of

log = logging.getLogger("distcron.replica")

DEFAULT_MAX_CLOCK_SKEW = 2.0
PUBLISH_EVERY = 1.0
SAMPLES = 5
STALE_AFTER = 6 * PUBLISH_EVERY
FIRST_HEARING = 3 * PUBLISH_EVERY


def skew_from(offsets: Iterable[float]) -> float:
    """This clock's lead on the median of all clocks, given the others'
    offsets from it (each: how far that clock is ahead of this one)."""
    return -statistics.median([0.0, *offsets])


def middles(offsets: Iterable[float]) -> tuple[float, float]:
    """The middle clock (twice) or two middle clocks of all, this one's (0) included."""
    clocks = sorted([0.0, *offsets])
    half = len(clocks) // 2
    return (clocks[half], clocks[half]) if len(clocks) % 2 else (clocks[half - 1],
                                                                 clocks[half])


@dataclass(frozen=True, slots=True)
class Verdict:
    """What this replica knows of its clock: its skew (None before it heard
    another replica) and, when it must not lead, why. ``waiting``: the problem
    is only that clocks just registered are not heard yet; it keeps this
    replica from campaigning but does not depose it when it leads (a replica
    joining must not make the leader step down)."""

    skew: float | None
    problem: str | None
    waiting: bool = False


class ClockCheck:
    """Samples of the other replicas' clocks, and the verdict on this one's."""

    def __init__(self, replica_id: str, bound: float, clock: Clock) -> None:
        self.replica_id = replica_id
        self.bound = bound
        self.clock = clock
        self._started = clock.monotonic()
        self._fit = False  # the last clear verdict; kept through an even split
        # replica -> (monotonic time of the last sample, its last offsets)
        self._samples: dict[str, tuple[float, deque[float]]] = {}

    def heard(self, replica: str, wall: float) -> None:
        """A registration of ``replica`` written at its wall time ``wall`` arrived now."""
        if replica == self.replica_id:
            return
        offset = wall - self.clock.now().timestamp()
        _, offsets = self._samples.get(replica, (0.0, deque(maxlen=SAMPLES)))
        offsets.append(offset)
        self._samples[replica] = (self.clock.monotonic(), offsets)

    def verdict(self, registered: Collection[str]) -> Verdict:
        """The verdict, given the replicas registered now."""
        now = self.clock.monotonic()
        live = {name: max(offsets) for name, (at, offsets) in self._samples.items()
                if name in registered and now - at <= STALE_AFTER}
        for name in list(self._samples):
            if name not in registered:
                del self._samples[name]
        unheard = [name for name in registered
                   if name != self.replica_id and name not in self._samples]
        skew = skew_from(live.values()) if live else None
        if self.bound <= 0:
            return Verdict(skew, None)
        if unheard and now - self._started < FIRST_HEARING:
            return Verdict(skew, f"waiting to hear the clocks of {', '.join(sorted(unheard))}",
                           waiting=True)
        within = [abs(middle) <= self.bound for middle in middles(live.values())]
        if within[0] == within[1]:
            self._fit = within[0]
        if self._fit:
            return Verdict(skew, None)
        assert skew is not None  # alone, a replica is always fit
        side = "ahead of" if skew > 0 else "behind"
        split = "" if within[0] == within[1] else (
            "; the clocks split evenly, and it was not found right before")
        return Verdict(skew, f"this replica's clock is {abs(skew):.1f} s {side} the median "
                             f"of {len(live) + 1} replicas' clocks (bound {self.bound:g} s)"
                             f"{split}: not leading")


def published_wall(value: bytes) -> float | None:
    """The ``wall`` a registration carries, or None (an older replica's)."""
    try:
        body = json.loads(value)
    except ValueError:
        return None
    wall = body.get("wall") if isinstance(body, dict) else None
    return float(wall) if isinstance(wall, int | float) else None


class ClockWatch:
    """Keeps a :class:`ClockCheck` fed from the registrations the mirror's
    changes bring; :attr:`verdict` is the latest, and the events say whether
    the clock is fit to lead. :attr:`heard_at` has, for every replica, when
    (on the monotonic clock) its registration was last written, as received
    here, and at which revision: how a follower tells a leader gone silent
    (:meth:`~distcron.replica.membership.Membership.depose`)."""

    def __init__(self, check: ClockCheck, mirror: StateMirror, metrics: Metrics) -> None:
        self.check = check
        self.mirror = mirror
        self.metrics = metrics
        self.verdict = Verdict(None, None)
        self.heard_at: dict[str, tuple[float, int]] = {}
        self.fit = asyncio.Event()
        self.unfit = asyncio.Event()
        self._judge()

    async def until_fit(self) -> None:
        await self.fit.wait()

    def batch(self, batch: WatchBatch) -> None:
        for event in batch.events:
            if event.type == "put" and event.kv.key.startswith(REPLICAS):
                name = name_of(event.kv.key, REPLICAS)
                self.heard_at[name] = (self.check.clock.monotonic(), event.kv.mod_revision)
                wall = published_wall(event.kv.value)
                if wall is not None:
                    self.check.heard(name, wall)
        self._judge()

    async def follow(self) -> None:
        """Take every change the mirror applies; forever (cancel to stop)."""
        while True:
            changes = self.mirror.subscribe()
            try:
                async for batch in changes:
                    self.batch(batch)
            except StoreError:
                pass  # the mirror reads the store again; subscribe to what follows
            finally:
                self.mirror.unsubscribe(changes)
            await self.mirror.caught_up(1)

    async def judge_every(self, seconds: float) -> None:
        """Judge again as samples age, even when nothing arrives."""
        while True:
            await self.check.clock.sleep(seconds)
            self._judge()

    def _judge(self) -> None:
        verdict = self.check.verdict(set(self.mirror.held(REPLICAS)))
        if verdict.problem != self.verdict.problem:
            if verdict.problem is None:
                log.info("event=clock_agrees replica=%s skew=%s", self.check.replica_id,
                         _seconds(verdict.skew))
            else:
                log.warning("event=clock_unfit replica=%s skew=%s problem=%r",
                            self.check.replica_id, _seconds(verdict.skew), verdict.problem)
        self.verdict = verdict
        self.metrics.clock_skew.set(verdict.skew or 0.0)
        self.metrics.clock_unfit.set(1 if verdict.problem else 0)
        (self.fit.clear if verdict.problem else self.fit.set)()
        deposes = verdict.problem is not None and not verdict.waiting
        (self.unfit.set if deposes else self.unfit.clear)()


def _seconds(value: float | None) -> str:
    return "none" if value is None else f"{value:.3f}"

