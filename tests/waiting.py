"""Waiting for a condition, with a deadline: the one way tests (and benchmarks) poll.

Nothing in the tests sleeps to make a test pass; they wait for what they need
to be true. Both helpers return the condition's first truthy value (so a test
can wait for a thing and use it), and fail the test, naming what they waited
for, once ``within`` seconds have passed. Use :func:`eventually` in async
code, where its condition may be a coroutine function; :func:`wait_until`
blocks, for synchronous harnesses (processes, HTTP clients).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

# Short, so that waiting costs little beyond the condition itself; the sync
# helper's conditions are heavier (HTTP requests to a process), so it polls less.
ASYNC_INTERVAL = 0.02
SYNC_INTERVAL = 0.05


def _timed_out(within: float, what: str) -> AssertionError:
    return AssertionError(f"timed out after {within}s waiting for {what}")


async def eventually(condition: Callable[[], T | Awaitable[T]], within: float, what: str,
                     *, interval: float = ASYNC_INTERVAL) -> T:
    """``condition()``'s first truthy value, awaited if it is awaitable;
    fails after ``within`` seconds, naming ``what``."""
    deadline = time.monotonic() + within
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise _timed_out(within, what)
        await asyncio.sleep(interval)


def wait_until(condition: Callable[[], T], within: float, what: str,
               *, interval: float = SYNC_INTERVAL) -> T:
    """``condition()``'s first truthy value; fails after ``within`` seconds,
    naming ``what``."""
    deadline = time.monotonic() + within
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise _timed_out(within, what)
        time.sleep(interval)
