"""A worker's guarded writes of one kind (claims; apart, reports), coalesced:
those made in one event-loop moment go out as one transaction per chunk.

Thousands of launches due in the same second would otherwise make as many
concurrent transactions, which a consensus store answers late: claims time
out, and the worker's lease renewals wait behind them.

A request is a launch's own transaction split in two: ``shared`` comparisons
(a claim's lease guard: the same for every claim under one lease), said once
per chunk, and the launch's own comparisons and puts. A chunk's transaction
compares them all and puts them all: when it succeeds, every request in it
holds; when it fails (some comparison failed, maybe another launch's), each
caller sends its own transaction as it would alone, reading why, so that the
outcomes are exactly the per-launch ones. A request alone in its moment is not
batched: the caller's own transaction is the same, and reads why it failed in
the same round trip.

Requests queue until the event loop has run the callbacks that were ready with
the first one (one ``sleep(0)``: the tasks a burst started queue theirs
meanwhile, and a claim in a quiet moment waits for nothing). Then they go out
in order, in chunks of requests with the same shared comparisons, each within
the store's ``max_txn_ops`` (etcd counts the comparisons and each branch's
operations apart; no limit: :data:`CHUNK_REQUESTS`) and :data:`CHUNK_BYTES`,
at most :data:`IN_FLIGHT` transactions at once; requests made meanwhile wait
for the next chunks.

An exception from a chunk's transaction (``StoreUnavailable``: it may have been
applied) is raised to each caller in it, who retries as it would alone.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from distcron.store import Compare, Put, Store

log = logging.getLogger("distcron.worker")

CHUNK_REQUESTS = 128  # requests per transaction, at most
# Keys and values per transaction: well within etcd's request size (1.5 MiB by
# default), with room for a few final reports of 64 KiB of output each.
CHUNK_BYTES = 512 * 1024
IN_FLIGHT = 4  # transactions of one batcher at once


@dataclass(eq=False)
class _Request:
    shared: tuple[Compare, ...]
    compares: tuple[Compare, ...]
    puts: tuple[Put, ...]
    future: asyncio.Future[bool]

    @property
    def size(self) -> int:
        return sum(len(put.key) + len(put.value) for put in self.puts)


class Batcher:
    """Coalesces one kind of guarded writes (see the module docstring);
    ``event`` names the log line of each batch."""

    def __init__(self, store: Store, event: str, worker_id: str) -> None:
        self.store = store
        self.event = event
        self.worker_id = worker_id
        self._queue: deque[_Request] = deque()
        self._flusher: asyncio.Task[None] | None = None
        self._free = asyncio.Semaphore(IN_FLIGHT)
        self._sending: set[asyncio.Task[None]] = set()  # referenced while they run

    async def submit(self, shared: Sequence[Compare], compares: Sequence[Compare],
                     puts: Sequence[Put]) -> bool:
        """True when a batch applied ``puts``, ``shared`` and ``compares``
        holding; False when the caller is to send its own transaction (it was
        alone, or its batch's guard failed)."""
        request = _Request(tuple(shared), tuple(compares), tuple(puts),
                           asyncio.get_running_loop().create_future())
        self._queue.append(request)
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush(), name=self.event)
        return await request.future

    async def _flush(self) -> None:
        try:
            # The window: tasks that were ready with the first request queue theirs.
            await asyncio.sleep(0)
            while self._queue:
                await self._free.acquire()
                chunk = self._next_chunk()
                if len(chunk) > 1:
                    task = asyncio.create_task(self._send(chunk), name=self.event)
                    self._sending.add(task)
                    task.add_done_callback(self._sending.discard)
                    continue
                self._free.release()
                for request in chunk:
                    request.future.set_result(False)
        finally:
            self._flusher = None

    def _next_chunk(self) -> list[_Request]:
        """The longest run of waiting requests from the first on that share its
        ``shared`` comparisons and fit in one transaction; taken off the queue."""
        limit = self.store.max_txn_ops
        chunk: list[_Request] = []
        compares = ops = size = 0
        keys: set[str] = set()
        while self._queue:
            request = self._queue[0]
            if request.future.done():  # its caller was cancelled (shutdown): send nothing
                self._queue.popleft()
                continue
            if chunk:
                fits = (request.shared == chunk[0].shared and len(chunk) < CHUNK_REQUESTS
                        and size + request.size <= CHUNK_BYTES
                        # A store refuses a transaction that puts a key twice.
                        and keys.isdisjoint(put.key for put in request.puts)
                        and (limit is None
                             or (compares + len(request.compares) <= limit
                                 and ops + len(request.puts) <= limit)))
                if not fits:
                    break
            else:
                compares = len(request.shared)
            chunk.append(self._queue.popleft())
            compares += len(request.compares)
            ops += len(request.puts)
            size += request.size
            keys.update(put.key for put in request.puts)
        return chunk

    async def _send(self, chunk: list[_Request]) -> None:
        try:
            result = await self.store.txn(
                [*chunk[0].shared, *(c for request in chunk for c in request.compares)],
                [put for request in chunk for put in request.puts])
        except Exception as exc:  # the callers' own to handle, as if alone
            log.info("event=%s worker=%s count=%s error=%r", self.event, self.worker_id,
                     len(chunk), str(exc))
            for request in chunk:
                if not request.future.done():
                    request.future.set_exception(exc)
            return
        finally:
            self._free.release()
        log.info("event=%s worker=%s count=%s held=%s", self.event, self.worker_id, len(chunk),
                 result.succeeded)
        for request in chunk:
            if not request.future.done():
                request.future.set_result(result.succeeded)
