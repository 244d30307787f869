"""The state mirror against real stores: after any sequence of writes it holds
exactly what a fresh read of the store finds, and it recovers from losing its
watch (a compacted history) by reading again."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from distcron.errors import Compacted
from distcron.replica.mirror import StateMirror
from distcron.replica.snapshot import Snapshot
from distcron.scheduler.records import LaunchRecord, LaunchState
from distcron.store import Delete, Put, Store, open_store
from distcron.store.layout import (
    ACTIVE,
    CURSORS,
    JOBS,
    REPORTS,
    TRIGGERS,
    WORKERS,
    active_key,
    cursor_key,
    job_key,
    launch_key,
    name_of,
    output_key,
    parse_cursor,
    report_key,
    trigger_key,
    worker_key,
)
from distcron.store.sqlite import SqliteStore

SLOT = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)
KINDS = ("job", "unjob", "launch", "end", "gap", "cursor", "prune", "trigger", "untrigger",
         "worker", "unworker", "report", "unreport", "output")


def _record(launch_id: str, state: LaunchState) -> bytes:
    return LaunchRecord(launch_id=launch_id, job=launch_id.partition("@")[0], slot=SLOT,
                        state=state).to_json()


async def _apply(store: Store, kind: str, job: str, n: int) -> None:
    """One write as the API, the leader or a worker would make it."""
    launch_id = f"{job}@{n}"
    ops: list[Put | Delete]
    if kind == "job":
        ops = [Put(job_key(job), json.dumps({"name": job, "v": n}).encode())]
    elif kind == "unjob":
        ops = [Delete(job_key(job)), Delete(cursor_key(job))]
    elif kind == "launch":
        ops = [Put(launch_key(launch_id), _record(launch_id, LaunchState.LAUNCHING)),
               Put(active_key(launch_id), b"")]
    elif kind == "end":
        ops = [Put(launch_key(launch_id), _record(launch_id, LaunchState.SUCCEEDED)),
               Delete(active_key(launch_id))]
    elif kind == "gap":
        gap = f"{job}@gap{n}"
        ops = [Put(launch_key(gap), _record(gap, LaunchState.SKIPPED)),
               Put(cursor_key(job), json.dumps({"slot": SLOT.isoformat(), "gap": gap}).encode())]
    elif kind == "cursor":
        ops = [Put(cursor_key(job), json.dumps({"slot": SLOT.isoformat()}).encode())]
    elif kind == "prune":
        ops = [Delete(launch_key(launch_id))]
    elif kind == "trigger":
        ops = [Put(trigger_key(f"t{n}"), json.dumps({"job": job, "launch_id": launch_id}).encode())]
    elif kind == "untrigger":
        ops = [Delete(trigger_key(f"t{n}"))]
    elif kind == "worker":
        ops = [Put(worker_key(f"w{n}"), json.dumps({"id": f"w{n}", "running": n}).encode())]
    elif kind == "unworker":
        ops = [Delete(worker_key(f"w{n}"))]
    elif kind == "report":
        ops = [Put(report_key(launch_id), json.dumps({"n": n}).encode())]
    elif kind == "unreport":
        ops = [Delete(report_key(launch_id))]
    else:
        ops = [Put(output_key(launch_id), b"x" * n)]
    await store.txn((), ops)


async def _read(store: Store) -> Snapshot:
    """What a fresh reader finds, independently of the mirror's code."""
    expected = Snapshot(await store.revision())
    held = {}
    for prefix in (JOBS, CURSORS, TRIGGERS, WORKERS, REPORTS):
        held[prefix] = {name_of(kv.key, prefix): kv.value for kv in (await store.range(prefix))[0]}
    expected.jobs = held[JOBS]
    expected.cursors = {job: parse_cursor(raw) for job, raw in held[CURSORS].items()}
    expected.triggers, expected.workers = held[TRIGGERS], held[WORKERS]
    expected.reports = held[REPORTS]
    wanted = {name_of(kv.key, ACTIVE) for kv in (await store.range(ACTIVE))[0]}
    wanted |= {c.gap for c in expected.cursors.values() if c.gap}
    for launch_id in sorted(wanted):
        kv = await store.get(launch_key(launch_id))
        if kv is None:
            expected.missing.append(launch_id)
        else:
            expected.records.append(LaunchRecord.from_json(kv.value))
    return expected


def _comparable(snapshot: Snapshot) -> dict[str, Any]:
    return {"jobs": snapshot.jobs, "cursors": snapshot.cursors,
            "records": sorted(snapshot.records, key=lambda r: r.launch_id),
            "missing": sorted(snapshot.missing), "triggers": snapshot.triggers,
            "workers": snapshot.workers, "reports": snapshot.reports}


@contextlib.asynccontextmanager
async def _running(mirror: StateMirror) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(mirror.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _check(open_one: Callable[[], Store], before: list[tuple[str, str, int]],
                 after: list[tuple[str, str, int]]) -> None:
    """Writes ``before`` the mirror starts (its first read), then ``after`` (its
    watch), from another client; the mirror must end equal to a fresh read."""
    writer, watched = open_one(), open_one()
    try:
        for op in before:
            await _apply(writer, *op)
        mirror = StateMirror(watched)
        async with _running(mirror):
            for op in after:
                await _apply(writer, *op)
            revision = await writer.revision()
            async with asyncio.timeout(10):
                await mirror.caught_up(revision)
            assert mirror.revision == revision
            assert _comparable(mirror.snapshot()) == _comparable(await _read(writer))
    finally:
        await writer.close()
        await watched.close()


_OPS = st.lists(st.tuples(st.sampled_from(KINDS), st.sampled_from(["a", "b"]),
                          st.integers(0, 3)), max_size=25)
# Each example opens its own store (a new file or etcd prefix), so the shared
# fixture's scope does not matter.
_FIXTURE = [HealthCheck.function_scoped_fixture]


@settings(max_examples=60, deadline=None, suppress_health_check=_FIXTURE)
@given(before=_OPS, after=_OPS)
def test_the_mirror_holds_what_a_fresh_read_finds_on_sqlite(
        tmp_path: Path, before: list[tuple[str, str, int]],
        after: list[tuple[str, str, int]]) -> None:
    path = tmp_path / f"{uuid.uuid4().hex}.db"
    asyncio.run(_check(lambda: SqliteStore(path, poll_interval=0.01), before, after))


@settings(max_examples=15, deadline=None, suppress_health_check=_FIXTURE)
@given(before=_OPS, after=_OPS)
def test_the_mirror_holds_what_a_fresh_read_finds_on_etcd(
        etcd_url: str, before: list[tuple[str, str, int]],
        after: list[tuple[str, str, int]]) -> None:
    url = f"{etcd_url.rstrip('/')}-{uuid.uuid4().hex}/"
    asyncio.run(_check(lambda: open_store(url), before, after))


def test_a_mirror_whose_history_was_compacted_reads_again_and_tells_its_subscriber(
        tmp_path: Path) -> None:
    async def scenario() -> None:
        path = tmp_path / "state.db"
        # The mirror's client polls rarely, so it notices the other client's
        # writes only when its own write wakes its watch: after the compaction.
        watched = SqliteStore(path, poll_interval=60)
        writer = SqliteStore(path, poll_interval=60)
        mirror = StateMirror(watched)
        try:
            await _apply(writer, "job", "a", 1)
            async with _running(mirror):
                async with asyncio.timeout(10):
                    await mirror.caught_up(await writer.revision())
                changes = mirror.subscribe()
                await _apply(writer, "job", "b", 1)
                await _apply(writer, "launch", "b", 2)
                await watched.compact(await writer.revision())
                await _apply(watched, "trigger", "a", 3)

                with pytest.raises(Compacted):
                    async with asyncio.timeout(10):
                        async for _ in changes:
                            pass
                async with asyncio.timeout(10):
                    await mirror.caught_up(await writer.revision())
                assert _comparable(mirror.snapshot()) == _comparable(await _read(writer))
                assert set(mirror.snapshot().jobs) == {"a", "b"}
        finally:
            await writer.close()
            await watched.close()

    asyncio.run(scenario())
