"""Jobs files larger than one transaction: etcd refuses a transaction of more
than 128 operations by default, so a file of hundreds of jobs is written in
parts of whole jobs, each guarded by what it read."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from distcron.clock import SystemClock
from distcron.errors import Conflict
from distcron.jobs import JobsDiff, JobSpec, diff_jobs, parse_jobs_toml, write_diff
from distcron.replica.jobsync import apply_config_jobs, file_source
from distcron.store import Compare, Delete, Put, Store, open_store
from distcron.store.layout import JOBS, job_key, name_of
from distcron.store.sqlite import SqliteStore

NOW = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)
SOURCE = file_source("jobs.toml")


def jobs_file(names: list[str], minute: int = 0) -> str:
    return "\n".join(f'[[job]]\nname = "{n}"\nschedule = "{minute} * * * *"\ncommand = "true"\n'
                     for n in names)


async def stored_jobs(store: Store) -> dict[str, JobSpec]:
    kvs, _ = await store.range(JOBS)
    return {name_of(kv.key, JOBS): JobSpec.from_json(kv.value, source=kv.key) for kv in kvs}


@given(st.lists(st.tuples(st.integers(1, 3), st.integers(0, 2)), max_size=60),
       st.integers(3, 20))
def test_parts_hold_whole_jobs_within_the_limit_and_lose_nothing(
        groups: list[tuple[int, int]], limit: int) -> None:
    diff = JobsDiff()
    for n, (compares, ops) in enumerate(groups):
        diff.groups.append(([Compare.missing(f"j{n}/{c}") for c in range(compares)],
                            [Delete(f"j{n}/{o}") for o in range(ops)]))
    batches = diff.transactions(limit)
    assert [c for cs, _ in batches for c in cs] == [c for cs, _ in diff.groups for c in cs]
    assert [o for _, os in batches for o in os] == [o for _, os in diff.groups for o in os]
    for compares, ops in batches:
        assert len(compares) <= limit and len(ops) <= limit
        # No job is split between two parts.
        assert len({c.key.partition("/")[0] for c in compares}
                   & {c.key.partition("/")[0] for cs, _ in batches if cs is not compares
                      for c in cs}) == 0
    assert len(diff.transactions(None)) == (1 if groups else 0)


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
        finally:
            await store.close()

    asyncio.run(scenario())


def test_an_edit_made_during_a_large_apply_stops_it_and_says_how_far_it_got(
        tmp_path: Path) -> None:
    async def scenario() -> None:
        store = SqliteStore(tmp_path / "state.db")
        store.max_txn_ops = 10  # as an etcd with --max-txn-ops=10 would refuse more
        try:
            names = [f"job-{n:02d}" for n in range(30)]
            specs = parse_jobs_toml(jobs_file(names), "jobs.toml")
            diff = diff_jobs(specs, {}, source=SOURCE, prune=True, now=NOW)
            # Someone creates the last job after the file was read.
            await store.put(job_key(names[-1]), specs[-1].to_json().encode())
            with pytest.raises(Conflict, match=r"5 of 6 parts were written, apply again"):
                await write_diff(store, diff)
            assert len(await stored_jobs(store)) == 26
            await apply_config_jobs(store, jobs_file(names), "jobs.toml", SystemClock())
            assert set(await stored_jobs(store)) == set(names)
        finally:
            await store.close()

    asyncio.run(scenario())


def test_an_edit_of_a_job_the_file_leaves_unchanged_also_stops_the_apply(
        tmp_path: Path) -> None:
    async def scenario() -> None:
        store = SqliteStore(tmp_path / "state.db")
        store.max_txn_ops = 10
        try:
            names = [f"job-{n:02d}" for n in range(30)]
            await apply_config_jobs(store, jobs_file(names), "jobs.toml", SystemClock())
            kvs, _ = await store.range(JOBS)
            diff = diff_jobs(parse_jobs_toml(jobs_file(names), "jobs.toml"),
                             {name_of(kv.key, JOBS): kv for kv in kvs}, source=SOURCE,
                             prune=True, now=NOW)
            assert not diff.changes
            edited = (await stored_jobs(store))[names[3]].model_copy(update={"command": "x"})
            await store.txn((), [Put(job_key(names[3]), edited.to_json().encode())])
            with pytest.raises(Conflict):
                await write_diff(store, diff)
        finally:
            await store.close()

    asyncio.run(scenario())
