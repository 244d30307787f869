"""Small helpers shared by the store tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

import pytest

from distcron.store import Event, WatchBatch


# This takes a timeout, against ASYNC109's advice, so that a failure can say
# what had arrived.
async def collect(
    watch: AsyncGenerator[WatchBatch, None],
    count: int,
    timeout: float = 5.0,  # noqa: ASYNC109
) -> list[Event]:
    """The next ``count`` events of a watch (failing after ``timeout``), checking
    that batches come in revision order and cover their events."""
    events: list[Event] = []
    covered = 0

    async def take() -> None:
        nonlocal covered
        while len(events) < count:
            batch = await anext(watch)
            assert batch.revision > covered, "batches must move forward"
            assert all(e.kv.mod_revision <= batch.revision for e in batch.events)
            covered = batch.revision
            events.extend(batch.events)

    try:
        await asyncio.wait_for(take(), timeout)
    except TimeoutError:
        pytest.fail(f"timed out after {timeout}s with {len(events)} of {count} events")
    assert len(events) == count, f"expected {count} events, got more: {events}"
    return events
