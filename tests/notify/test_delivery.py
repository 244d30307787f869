"""Delivering notifications from the store to real receivers: at least once,
with backoff while a receiver is down, never again once acknowledged, and
carried on by the next leader."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from distcron.clock import SystemClock
from distcron.jobs.notifier import NotifierSpec
from distcron.metrics import Metrics
from distcron.notify.delivery import Deliveries, encode
from distcron.notify.senders import Smtp, shown_url
from distcron.store import Store, open_store
from distcron.store.layout import LEADER, NOTIFY, notifier_key, notify_key, output_key
from tests.notify.receivers import smtp_receiver, webhook_receiver
from tests.replica.conftest import lead
from tests.waiting import eventually

pytestmark = pytest.mark.anyio
LAUNCH = "backup@2026-12-02T18:00:00Z"
BODY = {"launch_id": LAUNCH, "job": "backup", "slot": "2026-12-02T18:00:00Z",
        "state": "failed", "exit_code": 3, "reason": "exit code 3"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    yield opened
    await opened.close()


async def gone(store: Store, key: str) -> bool:
    return await store.get(key) is None


async def notifiers(store: Store, **urls: str) -> dict[str, bytes]:
    held = {}
    for name, url in urls.items():
        raw = NotifierSpec(name=name, url=url).to_json().encode()
        await store.put(notifier_key(name), raw)
        held[name] = raw
    return held


async def pending(store: Store, *names: str, output: bool = False) -> tuple[str, bytes]:
    key, value = notify_key(LAUNCH, "failed"), encode(BODY, names, set(), output)
    await store.put(key, value)
    return key, value


def deliveries(store: Store, fence: int, held: dict[str, bytes],
               smtp: Smtp | None = None) -> Deliveries:
    return Deliveries(store, fence, lambda: held, smtp, SystemClock(),
                      Metrics(CollectorRegistry()), first_retry=0.05)


async def test_a_webhook_gets_the_notification_with_its_key_and_it_is_sent_once(
        store: Store) -> None:
    fence = await lead(store)
    with webhook_receiver() as hook:
        held = await notifiers(store, ops=hook.url)
        key, value = await pending(store, "ops")
        delivery = deliveries(store, fence, held)
        delivery.offer(key, value)
        task = asyncio.create_task(delivery.run())
        try:
            await eventually(lambda: gone(store, key), 10, "the acknowledgement")
            await asyncio.sleep(0.2)  # a resend would come now, were there one
        finally:
            task.cancel()
        assert hook.bodies() == [BODY]
        assert hook.received[0].headers["Idempotency-Key"] == f"{LAUNCH}:failed"


async def test_a_receiver_down_for_a_while_gets_it_when_it_comes_back(store: Store) -> None:
    fence = await lead(store)
    with webhook_receiver(refuse=3) as hook:
        held = await notifiers(store, ops=hook.url)
        key, value = await pending(store, "ops")
        delivery = deliveries(store, fence, held)
        delivery.offer(key, value)
        task = asyncio.create_task(delivery.run())
        try:
            await eventually(hook.bodies, 10, "the delivery after the refusals")
            await eventually(lambda: gone(store, key), 10, "the acknowledgement")
        finally:
            task.cancel()
        assert hook.bodies() == [BODY] and hook.refuse == 0


async def test_a_notifier_that_acknowledged_is_not_sent_it_again_by_the_next_leader(
        store: Store) -> None:
    fence = await lead(store)
    with webhook_receiver() as ops, webhook_receiver(refuse=10_000) as down:
        held = await notifiers(store, ops=ops.url, pager=down.url)
        key, value = await pending(store, "ops", "pager")
        first = deliveries(store, fence, held)
        first.offer(key, value)
        task = asyncio.create_task(first.run())
        try:
            async def recorded() -> bool:
                kv = await store.get(key)
                return kv is not None and b'"delivered": ["ops"]' in kv.value
            await eventually(recorded, 10, "the acknowledgement of ops")
        finally:
            task.cancel()
        await store.delete(LEADER)
        second_fence = await lead(store, "r2")
        kv = await store.get(key)
        assert kv is not None
        down.refuse = 0
        second = deliveries(store, second_fence, held)
        second.offer(key, kv.value)
        task = asyncio.create_task(second.run())
        try:
            await eventually(lambda: gone(store, key), 10, "the last acknowledgement")
        finally:
            task.cancel()
        assert ops.bodies() == [BODY] and down.bodies() == [BODY]


async def test_a_deposed_leader_stops_delivering(store: Store) -> None:
    fence = await lead(store)
    with webhook_receiver(refuse=10_000) as hook:
        held = await notifiers(store, ops=hook.url)
        key, value = await pending(store, "ops")
        await store.delete(LEADER)
        await lead(store, "r2")
        delivery = deliveries(store, fence, held)
        delivery.offer(key, value)
        async with asyncio.timeout(10):
            await delivery.run()  # returns: its fence failed
        assert await store.get(key) is not None  # left for the new leader


async def test_a_mail_notifier_gets_the_subject_and_the_end_of_the_output(store: Store) -> None:
    fence = await lead(store)
    with smtp_receiver() as mail:
        held = await notifiers(store, mail="mailto:ops@example.com")
        await store.put(output_key(LAUNCH), b"x" * 10_000 + b"the last words\n")
        key, value = await pending(store, "mail", output=True)
        delivery = deliveries(store, fence, held, Smtp(mail.host, mail.port, "cron@example"))
        delivery.offer(key, value)
        task = asyncio.create_task(delivery.run())
        try:
            await eventually(lambda: mail.messages, 10, "the mail")
        finally:
            task.cancel()
        [(to, message)] = mail.messages
        assert to == ["ops@example.com"]
        assert message["Subject"] == f"[distcron] backup failed: {LAUNCH}"
        text = message.get_payload()
        assert isinstance(text, str) and "the last words" in text and "exit code 3" in text


def test_a_webhook_url_is_shown_without_its_secrets() -> None:
    shown = shown_url("https://bot:s3cret@hooks.example:8443/T0/B1?token=abc#x")
    assert shown == "https://***@hooks.example:8443/T0/B1?…"
    assert "s3cret" not in shown and "abc" not in shown


async def test_nothing_pending_sends_nothing(store: Store) -> None:
    fence = await lead(store)
    with webhook_receiver() as hook:
        held = await notifiers(store, ops=hook.url)
        await store.put(NOTIFY + "junk", b"not json")
        delivery = deliveries(store, fence, held)
        delivery.offer(NOTIFY + "junk", b"not json")
        task = asyncio.create_task(delivery.run())
        await asyncio.sleep(0.2)
        task.cancel()
        assert not hook.bodies()
