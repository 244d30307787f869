"""The state a replica holds in memory, kept current by one watch of the store.

Every replica runs one mirror for its whole life. It is what makes a follower
ready to take over: a new leader starts from the mirror instead of reading the
store, once the mirror has applied every change up to the leader key's own
revision (the fence), so nothing a deposed leader committed is missed. The
leader's term takes its changes (jobs, triggers, workers, reports) from the
same watch, and the mirror's revision is the replica's lag.

Held, as stored bytes (parsed only at takeover): job specs, cursors, live
launch records and the skipped/missed spans that cursors point at, pending
triggers, worker and replica registrations, and reports. Everything else the
watch sees (output, assignments, claims, the leader key) only moves the
revision.

An apply too large for one transaction (:mod:`distcron.jobs.journal`) is seen
whole: while ``meta/apply`` exists, changes of ``jobs/`` and ``notifiers/`` are
held back, and applied and delivered together when it is deleted. A mirror
that loads mid-apply (past its commit point) holds the apply's journal applied.

On failure: when the watch ends (``StoreUnavailable``, ``Compacted``), the
mirror reads the whole state again, with backoff, and watches on from that
read. A subscriber (the leader's term) receives the error instead of further
changes, since it would miss some otherwise. A replica that starts late, or
was wiped, makes the same first read.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from distcron.errors import StoreError
from distcron.jobs.journal import WRITING, decode_ops
from distcron.replica.snapshot import Snapshot
from distcron.scheduler.records import LaunchRecord
from distcron.store import Event, Put, Store, WatchBatch
from distcron.store.layout import (
    ACTIVE,
    APPLY,
    APPLYING,
    CURSORS,
    JOBS,
    LAUNCHES,
    NOTIFIERS,
    NOTIFY,
    RELEASED,
    REPLICAS,
    REPORTS,
    TRIGGERS,
    WORKERS,
    launch_key,
    name_of,
    parse_cursor,
)

log = logging.getLogger("distcron.replica")

# Prefixes whose keys the mirror holds as they are, by name.
HELD = (JOBS, CURSORS, TRIGGERS, WORKERS, REPORTS, REPLICAS, RELEASED, NOTIFIERS, NOTIFY)

# Past this many records to fetch, one range read of every record is cheaper
# than a read per record.
_FETCH_ONE_BY_ONE = 1000
_FIRST_RETRY_DELAY = 0.1
_MAX_RETRY_DELAY = 2.0


@dataclass(slots=True)
class _State:
    revision: int
    held: dict[str, dict[str, bytes]]
    active: set[str]
    records: dict[str, bytes]  # launch records, by launch id: live ones and gap spans
    gaps: dict[str, str] = field(default_factory=dict)  # job -> its cursor's span

    def keeps(self, launch_id: str) -> bool:
        return launch_id in self.active or self.gaps.get(
            launch_id.partition("@")[0]) == launch_id


class Subscription:
    """The changes after a snapshot, batch by batch; raises if the mirror lost
    its watch (changes may have been missed)."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[WatchBatch | StoreError] = asyncio.Queue()

    def put(self, item: WatchBatch | StoreError) -> None:
        self._queue.put_nowait(item)

    async def __aiter__(self) -> AsyncIterator[WatchBatch]:
        while True:
            item = await self._queue.get()
            if isinstance(item, StoreError):
                raise item
            yield item


class StateMirror:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._state = _State(0, {prefix: {} for prefix in HELD}, set(), {})
        self._loaded = False
        self._advanced = asyncio.Event()
        self._subscriptions: set[Subscription] = set()
        # Changes of jobs/ and notifiers/ seen while an apply is in progress.
        self._applying = False
        self._held_back: list[Event] = []

    @property
    def revision(self) -> int:
        """The store revision the mirror has applied (0 before its first read)."""
        return self._state.revision if self._loaded else 0

    def held(self, prefix: str) -> dict[str, bytes]:
        """The values held under one of :data:`HELD`, by name (do not modify)."""
        return self._state.held[prefix]

    async def run(self) -> None:
        """Read the state, then follow it; forever (cancel to stop)."""
        delay = _FIRST_RETRY_DELAY
        while True:
            try:
                revision = await self._load()
                delay = _FIRST_RETRY_DELAY
                watch = self.store.watch("", revision + 1)
                try:
                    async for batch in watch:
                        self._apply(batch)
                finally:
                    await watch.aclose()
            except StoreError as exc:
                log.warning("event=mirror_restart revision=%d error=%r", self.revision,
                            str(exc))
                self._loaded = False
                for subscription in self._subscriptions:
                    subscription.put(exc)
                self._subscriptions.clear()
                await asyncio.sleep(delay)
                delay = min(2 * delay, _MAX_RETRY_DELAY)

    async def caught_up(self, revision: int) -> None:
        """Return once the mirror has applied ``revision``."""
        while self.revision < revision:
            advanced = self._advanced
            await advanced.wait()

    def snapshot(self) -> Snapshot:
        """The state as of :attr:`revision`, parsed for a new leader. Take it
        together with :meth:`subscribe` (no ``await`` between) to miss nothing."""
        state = self._state
        snapshot = Snapshot(state.revision, dict(state.held[JOBS]))
        snapshot.cursors = {job: parse_cursor(raw) for job, raw in state.held[CURSORS].items()}
        snapshot.records = [LaunchRecord.from_json(raw) for raw in state.records.values()]
        wanted = state.active | set(state.gaps.values())
        snapshot.missing = sorted(wanted - state.records.keys())
        snapshot.triggers = dict(state.held[TRIGGERS])
        snapshot.workers = dict(state.held[WORKERS])
        snapshot.reports = dict(state.held[REPORTS])
        snapshot.released = dict(state.held[RELEASED])
        snapshot.notifications = dict(state.held[NOTIFY])
        return snapshot

    def subscribe(self) -> Subscription:
        subscription = Subscription()
        self._subscriptions.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscriptions.discard(subscription)

    async def _load(self) -> int:
        """Read every held prefix; returns the revision of the first read, from
        which the watch replays whatever the later reads may already include."""
        held: dict[str, dict[str, bytes]] = {}
        first = 0
        for prefix in HELD:
            kvs, revision = await self.store.range(prefix)
            first = first or revision
            held[prefix] = {name_of(kv.key, prefix): kv.value for kv in kvs}
        await self._load_apply(held)
        active = {name_of(kv.key, ACTIVE) for kv in (await self.store.range(ACTIVE))[0]}
        state = _State(first, held, active, {})
        for job, raw in held[CURSORS].items():
            # Most cursors have no gap: not parsing those saves half a second per 100,000 jobs.
            gap = parse_cursor(raw).gap if b'"gap"' in raw else None
            if gap:
                state.gaps[job] = gap
        wanted = active | set(state.gaps.values())
        if len(wanted) > _FETCH_ONE_BY_ONE:
            for kv in (await self.store.range(LAUNCHES))[0]:
                launch_id = name_of(kv.key, LAUNCHES)
                if launch_id in wanted:
                    state.records[launch_id] = kv.value
        else:
            for launch_id in wanted:
                found = await self.store.get(launch_key(launch_id))
                if found is not None:
                    state.records[launch_id] = found.value
        self._state = state
        self._loaded = True
        self._wake()
        log.info("event=mirror_loaded revision=%d jobs=%d live=%d", first, len(held[JOBS]),
                 len(active))
        return first

    async def _load_apply(self, held: dict[str, dict[str, bytes]]) -> None:
        """Hold an apply in progress as done, if it is past its commit point."""
        marker = await self.store.get(APPLY)
        self._applying, self._held_back = marker is not None, []
        if marker is None or json.loads(marker.value)["state"] != WRITING:
            return
        apply_id = json.loads(marker.value)["id"]
        for kv in (await self.store.range(f"{APPLYING}{apply_id}/"))[0]:
            for op in decode_ops(kv.value):
                for prefix in (JOBS, CURSORS, NOTIFIERS):
                    if op.key.startswith(prefix) and isinstance(op, Put):
                        held[prefix][name_of(op.key, prefix)] = op.value
                    elif op.key.startswith(prefix):
                        held[prefix].pop(name_of(op.key, prefix), None)

    def _released(self, events: tuple[Event, ...]) -> list[Event]:
        """``events`` but those of jobs and notifiers while an apply is in
        progress, held back until its end releases them."""
        out: list[Event] = []
        for event in events:
            key = event.kv.key
            if key == APPLY:
                self._applying = event.type == "put"
                if not self._applying:
                    out += self._held_back
                    self._held_back = []
            elif self._applying and key.startswith((JOBS, NOTIFIERS)):
                self._held_back.append(event)
                continue
            out.append(event)
        return out

    def _apply(self, batch: WatchBatch) -> None:
        state = self._state
        touched: set[str] = set()
        events = self._released(batch.events)
        for event in events:
            key, value, put = event.kv.key, event.kv.value, event.type == "put"
            if key.startswith(LAUNCHES):
                launch_id = name_of(key, LAUNCHES)
                touched.add(launch_id)
                if put:
                    state.records[launch_id] = value
                else:
                    state.records.pop(launch_id, None)
            elif key.startswith(ACTIVE):
                launch_id = name_of(key, ACTIVE)
                touched.add(launch_id)
                if put:
                    state.active.add(launch_id)
                else:
                    state.active.discard(launch_id)
            else:
                for prefix in HELD:
                    if key.startswith(prefix):
                        name = name_of(key, prefix)
                        if put:
                            state.held[prefix][name] = value
                        else:
                            state.held[prefix].pop(name, None)
                        if prefix == CURSORS:
                            self._cursor_changed(name, value if put else None, touched)
                        break
        for launch_id in touched:
            if not state.keeps(launch_id):
                state.records.pop(launch_id, None)
        state.revision = max(state.revision, batch.revision)
        delivered = WatchBatch(batch.revision, tuple(events))
        for subscription in self._subscriptions:
            subscription.put(delivered)
        self._wake()

    def _cursor_changed(self, job: str, value: bytes | None, touched: set[str]) -> None:
        gaps = self._state.gaps
        old = gaps.pop(job, None)
        if old is not None:
            touched.add(old)
        # Most cursors have no span; skip parsing those.
        if value is not None and b'"gap"' in value:
            gap = json.loads(value).get("gap")
            if gap:
                gaps[job] = str(gap)

    def _wake(self) -> None:
        self._advanced.set()
        self._advanced = asyncio.Event()
