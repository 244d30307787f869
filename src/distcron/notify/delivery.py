"""The leader's delivery of notifications, at least once, and never again once
acknowledged.

A notification is written by the leader's round in the same transaction as the
launch record that causes it: ``notify/<launch id>:<state>``, holding the body,
the notifiers it goes to and those that have acknowledged it. The leader of the
moment delivers what is pending: every notifier that has not acknowledged it is
sent it; each acknowledgement is recorded in the store (a write guarded by the
fence and by the value it read), and the key is deleted once every notifier has
acknowledged. So a leader that takes over delivers what its predecessor had
not, and a notification acknowledged is never sent again. A notifier that
took it but whose acknowledgement was not recorded (the leader died in
between) gets it twice, with the same ``Idempotency-Key``.

On failure: a send that fails is tried again with backoff (5 s doubling to 5
minutes) for a day, then given up (logged, and counted in
``distcron_notifications_total{outcome="given_up"}``). The fence failing ends
delivery here: the next leader goes on with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from distcron.clock import Clock
from distcron.errors import JobSpecError, StoreUnavailable
from distcron.jobs.notifier import NotifierSpec
from distcron.metrics import Metrics
from distcron.notify.senders import DeliveryFailed, Smtp, send_mail, send_webhook, shown_url
from distcron.store import Compare, Delete, Put, Store
from distcron.store.layout import LEADER, NOTIFY, name_of, output_key

log = logging.getLogger("distcron.notify")

FIRST_RETRY = 5.0
MAX_RETRY = 300.0
GIVE_UP_AFTER = 86_400.0
OUTPUT_TAIL = 4096  # bytes of output a notification carries when its job allows it
AT_ONCE = 8  # notifications sent at the same time


@dataclass(slots=True)
class _Pending:
    key: str
    value: bytes  # as stored: the guard of the acknowledgement
    body: dict[str, Any]
    notifiers: tuple[str, ...]
    delivered: set[str]
    with_output: bool
    first_seen: float
    due: float = 0.0
    failures: int = 0

    @property
    def launch_id(self) -> str:
        return str(self.body.get("launch_id", ""))

    @property
    def name(self) -> str:
        """``<launch id>:<state>``: what receivers deduplicate on."""
        return name_of(self.key, NOTIFY)

    def stored(self) -> bytes:
        return encode(self.body, self.notifiers, self.delivered, self.with_output)


def encode(body: Mapping[str, Any], notifiers: tuple[str, ...], delivered: set[str],
           with_output: bool) -> bytes:
    """The value of ``notify/<launch id>:<state>``."""
    return json.dumps({"body": dict(body), "notifiers": list(notifiers),
                       "delivered": sorted(delivered), "output": with_output},
                      sort_keys=True).encode()


class Deliveries:
    def __init__(self, store: Store, fence: int, notifiers: Callable[[], Mapping[str, bytes]],
                 smtp: Smtp | None, clock: Clock, metrics: Metrics, *,
                 first_retry: float = FIRST_RETRY) -> None:
        self.store = store
        self.fence = fence
        self._notifiers = notifiers  # the stored notifiers, by name (the state mirror's)
        self.smtp = smtp
        self.clock = clock
        self.metrics = metrics
        self._first_retry = first_retry
        self._pending: dict[str, _Pending] = {}
        self._changed = asyncio.Event()

    def offer(self, key: str, value: bytes) -> None:
        """A pending notification seen in the store (at the start of a term, or
        written since)."""
        known = self._pending.get(key)
        if known is not None and known.value == value:
            return
        try:
            stored = json.loads(value)
            pending = _Pending(key, value, dict(stored["body"]),
                               tuple(str(n) for n in stored["notifiers"]),
                               {str(n) for n in stored.get("delivered", ())},
                               bool(stored.get("output")), self.clock.monotonic())
        except (ValueError, KeyError, TypeError):
            log.error("event=notification_unreadable key=%s", key)
            return
        if known is not None:
            pending.first_seen, pending.failures = known.first_seen, known.failures
        self._pending[key] = pending
        self._changed.set()

    def withdraw(self, key: str) -> None:
        self._pending.pop(key, None)

    async def run(self) -> None:
        """Deliver, forever (cancel to stop); ends when the fence fails."""
        async with httpx.AsyncClient() as client:
            while True:
                now = self.clock.monotonic()
                due = [p for p in self._pending.values() if p.due <= now]
                if not due:
                    await self._wait(now)
                    continue
                for start in range(0, len(due), AT_ONCE):
                    batch = due[start:start + AT_ONCE]
                    if not all(await asyncio.gather(*(self._deliver(client, p)
                                                      for p in batch))):
                        return  # the fence failed: no longer the leader

    async def _wait(self, now: float) -> None:
        self._changed.clear()
        earliest = min((p.due for p in self._pending.values()), default=None)
        timeout = None if earliest is None else max(0.0, earliest - now)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._changed.wait()

    async def _deliver(self, client: httpx.AsyncClient, pending: _Pending) -> bool:
        """Send to every notifier not yet done; record what was acknowledged.
        False when the fence failed."""
        failed = False
        body = await self._with_output(pending)
        for name in pending.notifiers:
            if name in pending.delivered:
                continue
            spec = self._spec(name)
            if spec is None:
                log.error("event=notifier_unknown notifier=%s key=%s", name, pending.key)
                pending.delivered.add(name)  # nowhere to send it: nothing to retry
                continue
            try:
                if spec.is_mail:
                    await send_mail(self.smtp, spec.url, _Message(pending.name, body))
                else:
                    await send_webhook(client, spec.url, _Message(pending.name, body))
            except DeliveryFailed as exc:
                failed = True
                self.metrics.notifications.labels(notifier=name, outcome="failed").inc()
                log.warning("event=notification_failed launch_id=%s key=%s notifier=%s "
                            "error=%r", pending.launch_id, pending.key, name, str(exc))
                continue
            pending.delivered.add(name)
            self.metrics.notifications.labels(notifier=name, outcome="delivered").inc()
            log.info("event=notification_delivered launch_id=%s key=%s notifier=%s to=%s",
                     pending.launch_id, pending.key, name, shown_url(spec.url))
        if failed and self.clock.monotonic() - pending.first_seen < GIVE_UP_AFTER:
            pending.failures += 1
            pending.due = self.clock.monotonic() + min(
                self._first_retry * 2 ** (pending.failures - 1), MAX_RETRY)
            return await self._record(pending, done=False)
        if failed:
            log.error("event=notification_given_up launch_id=%s key=%s", pending.launch_id,
                      pending.key)
            for name in set(pending.notifiers) - pending.delivered:
                self.metrics.notifications.labels(notifier=name, outcome="given_up").inc()
        return await self._record(pending, done=True)

    async def _record(self, pending: _Pending, *, done: bool) -> bool:
        """Store what was acknowledged: the key goes once nothing is left to send."""
        value = pending.stored()
        if not done and value == pending.value:
            return await self._still_leading()  # nothing to record; but whose turn is it?
        guard = [Compare.created_at(LEADER, self.fence), Compare.value_is(pending.key,
                                                                          pending.value)]
        ops = [Delete(pending.key)] if done else [Put(pending.key, value)]
        try:
            result = await self.store.txn(guard, ops, [])
        except StoreUnavailable as exc:
            log.warning("event=notification_unrecorded key=%s error=%r", pending.key, str(exc))
            pending.due = self.clock.monotonic() + self._first_retry
            return True
        if result.succeeded:
            if done:
                self._pending.pop(pending.key, None)
            else:
                pending.value = value
            return True
        if not await self._still_leading():
            return False
        current = await self.store.get(pending.key)  # changed meanwhile: go on from there
        if current is None:
            self._pending.pop(pending.key, None)
        else:
            self.offer(pending.key, current.value)
        return True

    async def _still_leading(self) -> bool:
        try:
            leader = await self.store.get(LEADER)
        except StoreUnavailable:
            return True  # not known otherwise: the next write says
        return leader is not None and leader.create_revision == self.fence

    def _spec(self, name: str) -> NotifierSpec | None:
        raw = self._notifiers().get(name)
        if raw is None:
            return None
        try:
            return NotifierSpec.from_json(raw, source=f"notifier {name!r}")
        except JobSpecError as exc:
            log.error("event=notifier_rejected notifier=%s error=%r", name, str(exc))
            return None

    async def _with_output(self, pending: _Pending) -> dict[str, Any]:
        if not pending.with_output:
            return pending.body
        try:
            kv = await self.store.get(output_key(pending.launch_id))
        except StoreUnavailable:
            kv = None
        tail = b"" if kv is None else kv.value[-OUTPUT_TAIL:]
        return {**pending.body, "output_tail": tail.decode(errors="replace")}


@dataclass(frozen=True, slots=True)
class _Message:
    key: str
    body: dict[str, Any]
