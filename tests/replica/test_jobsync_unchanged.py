"""A restart with the same config file does not read its jobs again: the
``synced/`` record of the last apply still matches the file's text and every
job and notifier key in the store. Anything else (an edited, added or removed
job, another text, a damaged record) reads and applies the file as always."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from distcron.clock import SystemClock
from distcron.jobs import JobSpec
from distcron.replica.jobsync import apply_config_jobs, file_source
from distcron.store import Delete, Put, Store
from distcron.store.layout import JOBS, job_key, name_of, synced_key
from distcron.store.sqlite import SqliteStore


def jobs_file(names: list[str], minute: int = 0) -> str:
    notifier = '[[notifier]]\nname = "ops"\nurl = "https://hooks.example/x"\n'
    return notifier + "\n".join(
        f'[[job]]\nname = "{n}"\nschedule = "{minute} * * * *"\ncommand = "true"\n'
        for n in names)


async def stored(store: Store) -> dict[str, JobSpec]:
    kvs, _ = await store.range(JOBS)
    return {name_of(kv.key, JOBS): JobSpec.from_json(kv.value) for kv in kvs}


def run(tmp_path: Path, body: Callable[[Store], Awaitable[None]]) -> None:
    async def scenario() -> None:
        store = SqliteStore(tmp_path / "state.db")
        try:
            await body(store)
        finally:
            await store.close()

    asyncio.run(scenario())


NAMES = [f"job-{n}" for n in range(5)]


def test_the_same_file_again_is_not_read_and_writes_nothing(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def body(store: Store) -> None:
        await apply_config_jobs(store, jobs_file(NAMES), "jobs.toml", SystemClock())
        assert await store.get(synced_key(file_source("jobs.toml"))) is not None
        revision = await store.revision()
        with caplog.at_level(logging.INFO, logger="distcron.serve"):
            # Not even parsed: a document that would fail validation is never looked at.
            await apply_config_jobs(store, jobs_file(NAMES), "jobs.toml", SystemClock(),
                                    {"job": "not a list of tables"})
        assert "event=jobs_file_unchanged" in caplog.text
        assert await store.revision() == revision

    run(tmp_path, body)


@pytest.mark.parametrize("change", ["edit", "remove", "add", "record"])
def test_any_change_in_the_store_since_makes_the_file_apply_again(
        tmp_path: Path, change: str) -> None:
    async def body(store: Store) -> None:
        text = jobs_file(NAMES)
        await apply_config_jobs(store, text, "jobs.toml", SystemClock())
        jobs = await stored(store)
        if change == "edit":
            edited = jobs["job-1"].model_copy(update={"command": "false"})
            await store.put(job_key("job-1"), edited.to_json().encode())
        elif change == "remove":
            await store.txn((), [Delete(job_key("job-2"))])
        elif change == "add":  # a job of this file's source, written by someone else
            extra = jobs["job-1"].model_copy(update={"name": "stray"})
            await store.txn((), [Put(job_key("stray"), extra.to_json().encode())])
        else:
            await store.put(synced_key(file_source("jobs.toml")), b"{not json")
        await apply_config_jobs(store, text, "jobs.toml", SystemClock())
        after = await stored(store)
        assert set(after) == set(NAMES)
        assert {spec.command for spec in after.values()} == {"true"}

    run(tmp_path, body)


def test_another_text_is_applied_and_recorded(tmp_path: Path) -> None:
    async def body(store: Store) -> None:
        await apply_config_jobs(store, jobs_file(NAMES), "jobs.toml", SystemClock())
        await apply_config_jobs(store, jobs_file(NAMES[:3], minute=7), "jobs.toml",
                                SystemClock())
        after = await stored(store)
        assert set(after) == set(NAMES[:3])
        assert {spec.schedule for spec in after.values()} == {"7 * * * *"}
        revision = await store.revision()
        await apply_config_jobs(store, jobs_file(NAMES[:3], minute=7), "jobs.toml",
                                SystemClock())
        assert await store.revision() == revision

    run(tmp_path, body)


def test_a_file_written_in_parts_is_recorded_too(tmp_path: Path) -> None:
    async def body(store: Store) -> None:
        store.max_txn_ops = 4  # as an etcd with --max-txn-ops=4: several transactions
        names = [f"job-{n}" for n in range(12)]
        await apply_config_jobs(store, jobs_file(names), "jobs.toml", SystemClock())
        assert set(await stored(store)) == set(names)
        revision = await store.revision()
        await apply_config_jobs(store, jobs_file(names), "jobs.toml", SystemClock())
        assert await store.revision() == revision

    run(tmp_path, body)
