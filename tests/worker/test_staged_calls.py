"""Calls of many launches' tasks made together (distcron.worker.staged.Coalesced):
what is asked in one moment is one call, each caller gets its own result or the
call's error, and what comes while a call is under way goes in the next one."""

from __future__ import annotations

import asyncio

import pytest

from distcron.worker.staged import Coalesced, ReleaseMarks

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_calls_of_one_moment_are_one_call_and_each_gets_its_own_result() -> None:
    calls: list[list[int]] = []
    gate, called = asyncio.Event(), asyncio.Event()

    async def double(items: list[int]) -> list[int]:
        calls.append(items)
        called.set()
        await gate.wait()
        return [2 * item for item in items]

    coalesced: Coalesced[int, int] = Coalesced(double)
    first = [asyncio.ensure_future(coalesced(n)) for n in range(50)]
    await called.wait()
    # Asked while the first call is under way: the next call.
    later = [asyncio.ensure_future(coalesced(n)) for n in range(50, 60)]
    gate.set()
    assert await asyncio.gather(*first, *later) == [2 * n for n in range(60)]
    assert calls == [list(range(50)), list(range(50, 60))]


async def test_an_error_of_the_call_is_each_callers_and_the_next_call_still_runs() -> None:
    async def failing(items: list[int]) -> list[int]:
        if 0 in items:
            raise ValueError("no zero")
        return items

    coalesced: Coalesced[int, int] = Coalesced(failing)
    results = await asyncio.gather(*(coalesced(n) for n in range(3)), return_exceptions=True)
    assert all(isinstance(r, ValueError) for r in results)
    assert await coalesced(7) == 7


def test_release_marks_name_what_any_mark_in_the_store_names() -> None:
    marks = ReleaseMarks()
    assert marks.put("7-1", b'["a", "b"]') == {"a", "b"}
    assert marks.put("7-2", b'["b"]') == {"b"}
    marks.delete("7-1")
    assert not marks.names("a") and marks.names("b")
    assert marks.put("7-3", b"not json") == frozenset()
    assert marks.replace([("8-1", b'["c"]')]) == {"c"}
    assert not marks.names("b") and marks.names("c")
