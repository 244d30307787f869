"""Jobs files larger than one transaction: etcd refuses a transaction of more
than 128 operations by default, so a file of hundreds of jobs goes through the
apply journal (distcron.jobs.journal): whole or not at all, even when the
applier stops at any of its writes."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from distcron.clock import SystemClock
from distcron.errors import Conflict
from distcron.jobs import JobsDiff, JobSpec, diff_jobs, parse_jobs_toml, write_diff
from distcron.jobs.journal import finish_apply, settle_apply
from distcron.replica.jobsync import apply_config_jobs, file_source
from distcron.replica.mirror import StateMirror
from distcron.store import Op, Put, Store, open_store
from distcron.store.layout import APPLY, APPLYING, JOBS, job_key, name_of
from distcron.store.sqlite import SqliteStore
from tests.interposing_store import InterposingStore
from tests.waiting import eventually

NOW = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)
SOURCE = file_source("jobs.toml")
OLD = [f"old-{n:02d}" for n in range(20)]
NEW = [f"new-{n:02d}" for n in range(20)]


def jobs_file(names: list[str], minute: int = 0) -> str:
    return "\n".join(f'[[job]]\nname = "{n}"\nschedule = "{minute} * * * *"\ncommand = "true"\n'
                     for n in names)


async def stored_jobs(store: Store) -> dict[str, JobSpec]:
    kvs, _ = await store.range(JOBS)
    return {name_of(kv.key, JOBS): JobSpec.from_json(kv.value, source=kv.key) for kv in kvs}


async def diff_to(store: Store, names: list[str]) -> JobsDiff:
    kvs, _ = await store.range(JOBS)
    return diff_jobs(parse_jobs_toml(jobs_file(names), "jobs.toml"),
                     {name_of(kv.key, JOBS): kv for kv in kvs}, source=SOURCE, prune=True,
                     now=NOW)


class Killed(Exception):
    """The applier stopped here, as a SIGKILLed process would."""


class KilledAt(InterposingStore):
    """Raises Killed instead of the ``at``-th transaction (counting from 0)."""

    def __init__(self, inner: Store, at: int) -> None:
        self.count = 0
        self.at = at

        def when(success: Sequence[Op]) -> bool:
            self.count += 1
            return self.count - 1 == at

        super().__init__(inner, when)
        self.before_txn = self._kill
        self.max_txn_ops = inner.max_txn_ops

    async def _kill(self, store: Store) -> None:
        raise Killed


def small_store(path: Path) -> SqliteStore:
    store = SqliteStore(path)
    store.max_txn_ops = 10  # as an etcd with --max-txn-ops=10 would refuse more
    return store


def test_an_applier_killed_at_any_write_leaves_the_old_or_the_new_set(tmp_path: Path) -> None:
    async def scenario() -> None:
        # Count the writes of a whole apply first, then stop it before each one.
        at, finished = 0, False
        while not finished:
            store = small_store(tmp_path / f"state-{at}.db")
            try:
                await apply_config_jobs(store, jobs_file(OLD), "jobs.toml", SystemClock())
                diff = await diff_to(store, NEW)
                killed = KilledAt(store, at)
                try:
                    await write_diff(killed, diff, NOW)
                    finished = True
                except Killed:
                    pass
                # The leader's look, as at the start of its term and once stale.
                seen = await settle_apply(store, None, at_start=True)
                seen = await settle_apply(store, seen, at_start=False)
                assert set(await stored_jobs(store)) in (set(OLD), set(NEW)), at
                assert await store.get(APPLY) is None
                await settle_apply(store, seen, at_start=False)
                assert (await store.range(APPLYING))[0] == [], "the journal is cleaned up"
                await apply_config_jobs(store, jobs_file(NEW), "jobs.toml", SystemClock())
                assert set(await stored_jobs(store)) == set(NEW)
            finally:
                await store.close()
            at += 1
        assert at > 8  # chunks, marker, parts: many places to stop

    asyncio.run(scenario())


def test_an_edit_made_during_a_large_apply_refuses_it_whole(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = small_store(tmp_path / "state.db")
        try:
            names = [f"job-{n:02d}" for n in range(30)]
            specs = parse_jobs_toml(jobs_file(names), "jobs.toml")
            diff = diff_jobs(specs, {}, source=SOURCE, prune=True, now=NOW)
            # Someone creates the last job after the file was read.
            await store.put(job_key(names[-1]), specs[-1].to_json().encode())
            with pytest.raises(Conflict, match=rf"'{job_key(names[-1])}' changed.*nothing"):
                await write_diff(store, diff, NOW)
            assert len(await stored_jobs(store)) == 1
            assert await store.get(APPLY) is None
            assert (await store.range(APPLYING))[0] == []
            await apply_config_jobs(store, jobs_file(names), "jobs.toml", SystemClock())
            assert set(await stored_jobs(store)) == set(names)
        finally:
            await store.close()

    asyncio.run(scenario())


def test_an_edit_of_a_job_the_file_leaves_unchanged_also_refuses_the_apply(
        tmp_path: Path) -> None:
    async def scenario() -> None:
        store = small_store(tmp_path / "state.db")
        try:
            names = [f"job-{n:02d}" for n in range(30)]
            await apply_config_jobs(store, jobs_file(names), "jobs.toml", SystemClock())
            diff = await diff_to(store, [*names, "one-more"])
            edited = (await stored_jobs(store))[names[3]].model_copy(update={"command": "x"})
            await store.txn((), [Put(job_key(names[3]), edited.to_json().encode())])
            with pytest.raises(Conflict):
                await write_diff(store, diff, NOW)
            assert "one-more" not in await stored_jobs(store)
        finally:
            await store.close()

    asyncio.run(scenario())


def test_writes_of_jobs_during_an_open_apply_are_refused(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = small_store(tmp_path / "state.db")
        try:
            await apply_config_jobs(store, jobs_file(OLD), "jobs.toml", SystemClock())
            # Stopped at its first write of a job: past the commit point.
            diff = await diff_to(store, NEW)
            killed = KilledAt(store, -1)
            killed.when = lambda ops: any(op.key.startswith(JOBS) for op in ops)
            with pytest.raises(Killed):
                await write_diff(killed, diff, NOW)
            assert await store.get(APPLY) is not None
            with pytest.raises(Conflict, match="an apply is in progress"):
                await write_diff(store, await diff_to(store, ["other"]), NOW)
            assert await finish_apply(store)
            assert set(await stored_jobs(store)) == set(NEW)
        finally:
            await store.close()

    asyncio.run(scenario())


def test_the_mirror_delivers_a_large_apply_whole(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = small_store(tmp_path / "state.db")
        mirror = StateMirror(store)
        task = asyncio.create_task(mirror.run())
        try:
            await apply_config_jobs(store, jobs_file(OLD), "jobs.toml", SystemClock())
            await mirror.caught_up(await store.revision())
            changes = mirror.subscribe()
            seen: list[set[str]] = []

            async def follow() -> None:
                async for _batch in changes:
                    seen.append(set(mirror.held(JOBS)))

            follower = asyncio.create_task(follow())
            await write_diff(store, await diff_to(store, NEW), NOW)
            await mirror.caught_up(await store.revision())
            await eventually(lambda: bool(seen) and seen[-1] == set(NEW), 5.0,
                             "the mirror holds the new set")
            follower.cancel()
            assert all(jobs in (set(OLD), set(NEW)) for jobs in seen), seen
        finally:
            task.cancel()
            await store.close()

    asyncio.run(scenario())


def test_a_file_of_300_jobs_is_applied_on_etcd_and_replaced_by_another(etcd_url: str) -> None:
    async def scenario() -> None:
        store = open_store(f"{etcd_url.rstrip('/')}-{uuid.uuid4().hex}/")
        try:
            assert store.max_txn_ops == 128
            first = [f"job-{n:03d}" for n in range(300)]
            await apply_config_jobs(store, jobs_file(first), "jobs.toml", SystemClock())
            assert set(await stored_jobs(store)) == set(first)
            # 100 removed, 200 changed, 50 added.
            second = first[100:] + [f"new-{n}" for n in range(50)]
            await apply_config_jobs(store, jobs_file(second, minute=5), "jobs.toml",
                                    SystemClock())
            jobs = await stored_jobs(store)
            assert set(jobs) == set(second)
            assert {job.schedule for job in jobs.values()} == {"5 * * * *"}
            assert await store.get(APPLY) is None
            assert (await store.range(APPLYING))[0] == []
        finally:
            await store.close()

    asyncio.run(scenario())
