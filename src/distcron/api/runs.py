"""``/runs``: launch records, newest first, and one run with its output."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status

from distcron.api.auth import Credentials, check_token
from distcron.api.context import Context
from distcron.api.models import RunDetail
from distcron.scheduler.records import LaunchRecord, LaunchState
from distcron.store import Store
from distcron.store.layout import LAUNCHES, launch_key, launch_prefix, output_key

router = APIRouter(tags=["runs"])

_NEVER = datetime.min.replace(tzinfo=UTC)


def _when(record: LaunchRecord) -> datetime:
    """The instant a record is about: its last slot, or when a manual run was asked for.

    Launch ids do not sort by time (``manual-…`` sorts after every slot), so
    "newest" is decided on this instead.
    """
    return record.until or record.slot or record.intent_at or record.started_at or _NEVER


async def read_launches(store: Store, job: str | None = None) -> list[LaunchRecord]:
    """Every launch record (of one job, when given), newest first."""
    kvs, _ = await store.range(LAUNCHES if job is None else launch_prefix(job))
    # Parsing many records is CPU work: off the event loop, which also runs the
    # replica's lease keepalive.
    return await asyncio.to_thread(_newest_first, [kv.value for kv in kvs])


def _newest_first(values: list[bytes]) -> list[LaunchRecord]:
    records = [LaunchRecord.from_json(value) for value in values]
    records.sort(key=lambda r: (_when(r), r.launch_id), reverse=True)
    return records


@router.get("/runs", response_model=list[LaunchRecord])
async def list_runs(
    context: Context,
    job: str | None = None,
    state: LaunchState | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> list[LaunchRecord]:
    """Launch records, newest first, optionally of one job and in one state."""
    records = await read_launches(context.store, job)
    if state is not None:
        records = [r for r in records if r.state is state]
    return records[:limit]


@router.get("/runs/{launch_id:path}", response_model=RunDetail)
async def show_run(
    launch_id: str, context: Context, credentials: Credentials, output: bool = False
) -> RunDetail:
    """One launch record; ``?output=true`` adds the run's output (needs the token:
    output may hold secrets)."""
    if output:
        check_token(context, credentials)
    kv = await context.store.get(launch_key(launch_id))
    if kv is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"launch {launch_id!r} not found")
    record = LaunchRecord.from_json(kv.value)
    text = None
    if output:
        out = await context.store.get(output_key(launch_id))
        text = None if out is None else out.value.decode(errors="replace")
    return RunDetail(**record.model_dump(), output=text)
