"""The polling helpers return what they waited for, and fail naming it."""

from __future__ import annotations

import itertools

import pytest

from tests.waiting import eventually, wait_until


def test_wait_until_returns_the_first_truthy_value() -> None:
    counts = itertools.count()
    assert wait_until(lambda: next(counts) >= 3 and "third", 5, "a count", interval=0) == "third"


def test_wait_until_fails_after_its_deadline_naming_what_it_waited_for() -> None:
    with pytest.raises(AssertionError, match=r"after 0\.05s waiting for the impossible"):
        wait_until(lambda: None, 0.05, "the impossible", interval=0.01)


@pytest.mark.anyio
async def test_eventually_awaits_a_coroutine_condition_and_returns_its_value() -> None:
    counts = itertools.count()

    async def ready() -> int:
        return max(0, next(counts) - 2)

    assert await eventually(ready, 5, "a count", interval=0) == 1


@pytest.mark.anyio
async def test_eventually_fails_after_its_deadline_naming_what_it_waited_for() -> None:
    with pytest.raises(AssertionError, match=r"after 0\.05s waiting for a plain false"):
        await eventually(lambda: False, 0.05, "a plain false", interval=0.01)
