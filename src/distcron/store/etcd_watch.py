"""One watch on an etcd prefix that outlives the endpoint serving it.

A watch is a stream from one endpoint. It moves to another endpoint, resuming
from the revision after the last one it delivered (so nothing is missed and
nothing repeated; a member that is behind holds the events back until it has
them), when:

- the stream ends or breaks (the member died or is shutting down);
- etcd cancels it for want of a leader (the request carries etcd's
  require-leader flag, so a member cut off from the majority ends its watches);
- any other request of the client found its endpoint failed (a member cut
  off from the network is noticed by the first request that times out on
  it, lease keepalives within a fraction of their TTL);
- it has been quiet for twice the call timeout and its endpoint does not
  answer a status request within the timeout, or has no leader (a stopped or
  hung member keeps the connection open but sends nothing).

If no endpoint starts a stream within ``reconnect_window`` seconds (the first
one as well), the watch raises :class:`~distcron.errors.StoreUnavailable`; if the revision to resume
from has been compacted meanwhile, it raises
:class:`~distcron.store.base.Compacted` — in both cases the caller re-reads and
watches again. etcd's progress notifications (every 10 minutes by default)
move the resume point of a quiet watch forward, so that a later reconnection
does not ask for history compacted since. Events that arrive before the
caller asks for them wait in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Callable

from distcron.errors import Compacted, StoreError, StoreUnavailable
from distcron.store.base import WatchBatch
from distcron.store.etcd_client import (
    UNAVAILABLE_CODES,
    EtcdServerError,
    GatewayClient,
    Json,
    Stream,
)
from distcron.store.etcd_codec import KeyCodec, revision_of

DEFAULT_RECONNECT_WINDOW = 10.0
_FIRST_RETRY_DELAY = 0.05
_MAX_RETRY_DELAY = 1.0
_STOP = object()


class _EndpointGone:
    """Another request found the stream's endpoint failed."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


class EtcdWatch:
    """The changes under ``prefix`` from ``start_revision`` on; iterate :meth:`batches`."""

    def __init__(
        self,
        client: GatewayClient,
        codec: KeyCodec,
        prefix: str,
        start_revision: int,
        *,
        reconnect_window: float = DEFAULT_RECONNECT_WINDOW,
    ) -> None:
        self._client = client
        self._codec = codec
        self._prefix = prefix
        self._next = start_revision
        self._reconnect_window = reconnect_window
        self._stopped = asyncio.Event()
        self._queue: asyncio.Queue[object] = asyncio.Queue()

    def stop(self) -> None:
        """End the iteration (the store is closing)."""
        self._stopped.set()
        self._queue.put_nowait(_STOP)

    async def batches(self) -> AsyncGenerator[WatchBatch, None]:
        while (opened := await self._connect()) is not None:
            stream, first = opened
            queue: asyncio.Queue[object] = asyncio.Queue()
            self._queue = queue
            queue.put_nowait(first)
            reader = asyncio.create_task(_read(stream, queue))
            stop_listening = self._client.on_failure(stream.endpoint, _told(queue))
            try:
                while (message := await self._next_message(stream, queue)) is not None:
                    if message is _STOP:
                        return
                    assert isinstance(message, dict)
                    batch = self._batch(message)
                    if batch is not None:
                        yield batch
            finally:
                stop_listening()
                reader.cancel()
                await stream.aclose()

    async def _connect(self) -> tuple[Stream, Json] | None:
        """A stream from ``self._next`` on, or ``None`` if stopped meanwhile."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._reconnect_window
        delay = _FIRST_RETRY_DELAY
        while not self._stopped.is_set():
            request = {
                **self._codec.select(self._prefix, prefix=True),
                "start_revision": str(self._next),
                "progress_notify": True,
            }
            try:
                return await self._client.open_stream("/v3/watch", {"create_request": request})
            except StoreUnavailable:
                if loop.time() + delay > deadline:
                    raise
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._stopped.wait()
            delay = min(2 * delay, _MAX_RETRY_DELAY)
        return None

    async def _next_message(self, stream: Stream, queue: asyncio.Queue[object]) -> object:
        """The stream's next message (or _STOP); ``None`` when the stream must
        be given up for another endpoint."""
        quiet = 2 * self._client.timeout
        while True:
            try:
                # Not asyncio.wait_for: on Python 3.11 it drops a cancellation that
                # comes as a message arrives, and the watch would outlive its task.
                async with asyncio.timeout(quiet):
                    item = await queue.get()
            except TimeoutError:
                if await self._client.healthy(stream.endpoint):
                    continue
                self._client.failed(stream.endpoint, "watch quiet and endpoint not healthy")
                return None
            if isinstance(item, _EndpointGone):
                return None  # the client has moved on already
            if isinstance(item, EtcdServerError) and item.code not in UNAVAILABLE_CODES:
                raise item
            if isinstance(item, StoreError):
                self._client.failed(stream.endpoint, f"watch stream: {item}")
                return None
            return item

    def _batch(self, result: Json) -> WatchBatch | None:
        """Account for one message; the batch to deliver, if it has events."""
        if result.get("canceled"):
            compacted = int(result.get("compact_revision", 0))
            if compacted:
                raise Compacted(self._next, compacted)
            # Cancelled for another reason (no leader): the stream ends, we reconnect.
            return None
        events = [
            event
            for event in map(self._codec.event, result.get("events", ()))
            if event.kv.mod_revision >= self._next
        ]
        if events:
            revision = events[-1].kv.mod_revision
            self._next = revision + 1
            return WatchBatch(revision, tuple(events))
        if not result.get("created") and "events" not in result:
            # A progress notification: etcd sends them only to a watch that has
            # caught up, so every revision up to the header's is covered.
            self._next = max(self._next, revision_of(result) + 1)
        return None


def _told(queue: asyncio.Queue[object]) -> Callable[[str], None]:
    """A failure listener that tells the watch reading ``queue``."""

    def tell(reason: str) -> None:
        queue.put_nowait(_EndpointGone(reason))

    return tell


async def _read(stream: Stream, queue: asyncio.Queue[object]) -> None:
    """Move the stream's messages (then the error that ended it) into ``queue``,
    so that the watch can wait for them with a time limit without cancelling a read."""
    try:
        while True:
            queue.put_nowait(await stream.next())
    except StoreError as exc:
        queue.put_nowait(exc)
