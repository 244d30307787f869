"""``/runs``: launch records, newest first; one run with its attempts and output;
a run's output, followed live while it runs (``/runs/<id>/output?follow=true``).

A running launch's output reaches the store while it runs (the leader, or the
worker, copies its tail there every few seconds: ``replica/runs.py``), so any
replica can serve it, and a follow is a poll of the store, one per second per
request, for at most ``FOLLOW_LIMIT``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status
from fastapi.responses import StreamingResponse

from distcron.api.auth import Credentials, check_token
from distcron.api.context import Context
from distcron.api.models import ERRORS, AttemptDetail, RunDetail
from distcron.scheduler.records import LaunchRecord, LaunchState, run_id_for
from distcron.store import Store
from distcron.store.layout import LAUNCHES, launch_key, launch_prefix, output_key

router = APIRouter(tags=["runs"], responses=ERRORS)

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


# A followed run's output is looked at this often, for at most this long per
# request (a client that wants more asks again).
FOLLOW_POLL = 1.0
FOLLOW_LIMIT = 24 * 3600.0
# Bytes of the last output sent that are looked for in the next one: a stored
# output is a tail, so what is new is what follows them.
_OVERLAP = 256


async def _read_record(store: Store, launch_id: str) -> LaunchRecord:
    kv = await store.get(launch_key(launch_id))
    if kv is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"launch {launch_id!r} not found")
    return LaunchRecord.from_json(kv.value)


async def _output(store: Store, run_id: str) -> bytes:
    kv = await store.get(output_key(run_id))
    return b"" if kv is None else kv.value


def _run_id_of(record: LaunchRecord, attempt: int | None) -> str:
    """The run id of one attempt of the launch (the current one by default)."""
    if attempt is None or attempt == record.attempt:
        return record.run_id or record.launch_id
    if 1 <= attempt < record.attempt:
        return run_id_for(record.launch_id, attempt)
    raise HTTPException(status.HTTP_404_NOT_FOUND,
                        f"launch {record.launch_id!r} has no attempt {attempt} "
                        f"(attempts: 1 to {record.attempt})")


def new_bytes(sent: bytes, now: bytes) -> bytes:
    """What ``now`` (a run's output tail) adds to ``sent`` (its last tail sent).

    Exact while the output fits the kept tail (64 KiB); beyond, the new part is
    found after the last bytes sent, which a run repeating the same bytes over
    and over can make ambiguous (a follow may then skip or repeat some)."""
    if now.startswith(sent):
        return now[len(sent):]
    mark = sent[-_OVERLAP:]
    at = now.rfind(mark)
    if at >= 0:
        return now[at + len(mark):]
    # Everything sent has scrolled out of the tail: more was written than kept.
    return b"\n[... output skipped ...]\n" + now


async def follow_output(store: Store, launch_id: str, attempt: int | None) -> AsyncIterator[bytes]:
    """The run's output as it grows, until the launch is no longer live (or
    the request's time is up). A launch that runs again (a retry) goes on
    with its next attempt's output, after a line naming it."""
    record = await _read_record(store, launch_id)
    run_id = _run_id_of(record, attempt)
    sent = b""
    deadline = asyncio.get_running_loop().time() + FOLLOW_LIMIT
    while True:
        output = await _output(store, run_id)
        if output != sent:
            yield new_bytes(sent, output)
            sent = output
        if not record.state.live or attempt is not None or (
                asyncio.get_running_loop().time() > deadline):
            return
        # The poll of one HTTP stream: real time, not the service's clock.
        await asyncio.sleep(FOLLOW_POLL)
        kv = await store.get(launch_key(launch_id))
        if kv is None:
            return  # pruned meanwhile
        record = LaunchRecord.from_json(kv.value)
        current = record.run_id or record.launch_id
        if current != run_id and record.state is not LaunchState.RETRYING:
            # What the last attempt wrote after the last poll, then the next one's.
            rest = new_bytes(sent, await _output(store, run_id))
            yield rest + f"\n--- attempt {record.attempt} ---\n".encode()
            run_id, sent = current, b""


@router.get("/runs/{launch_id:path}/output", response_class=StreamingResponse,
            responses={200: {"content": {"text/plain": {}},
                             "description": "the output, as written"}})
async def run_output(
    launch_id: str, context: Context, credentials: Credentials,
    follow: Annotated[bool, Query(description="go on sending the output as the run "
                                  "writes it, until the launch ends")] = False,
    attempt: Annotated[int | None, Query(ge=1, description="the output of this attempt "
                                         "(default: the current one)")] = None,
) -> StreamingResponse:
    """A run's output (needs the token: output may hold secrets); with
    ``follow=true``, a chunked stream that ends when the launch ends."""
    check_token(context, credentials)
    record = await _read_record(context.store, launch_id)
    if not follow:
        run_id = _run_id_of(record, attempt)
        body = await _output(context.store, run_id)
        return StreamingResponse(iter([body]), media_type="text/plain; charset=utf-8")
    _run_id_of(record, attempt)  # an attempt it does not have is refused before streaming
    return StreamingResponse(follow_output(context.store, launch_id, attempt),
                             media_type="text/plain; charset=utf-8")


@router.get("/runs/{launch_id:path}", response_model=RunDetail)
async def show_run(
    launch_id: str, context: Context, credentials: Credentials, output: bool = False
) -> RunDetail:
    """One launch record, with its earlier attempts (``attempts``); ``?output=true``
    adds the current attempt's output, and each earlier attempt's (needs the
    token: output may hold secrets)."""
    if output:
        check_token(context, credentials)
    record = await _read_record(context.store, launch_id)
    if not output:
        return RunDetail(**record.model_dump())
    text = (await _output(context.store, _run_id_of(record, None))).decode(errors="replace")
    attempts = [
        AttemptDetail(**a.model_dump(),
                      output=(await _output(context.store, a.run_id)).decode(errors="replace"))
        for a in record.attempts]
    return RunDetail(**{**record.model_dump(), "attempts": attempts}, output=text or None)
