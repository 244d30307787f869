"""``/jobs``: read, create, replace, remove, pause, resume and trigger jobs.

Writes are compare-and-set on the job key's ``mod_revision`` (or on its
absence), so an edit based on a stale read fails with 409 instead of undoing
someone else's. A job and its cursor are created and removed together; the
cursor is the creation instant, so a new job owns only the slots after it.
A job's launch records outlive it: they are history.

A job that a replica's config file defines is changed (PUT) or removed
(DELETE) only with ``?take_over=true``, which makes it the API's from then on;
without it the answer is 409 naming the file (see :mod:`distcron.jobs.jobset`).
Pausing, resuming and triggering are run-time acts, allowed on any job; a spec
that does not say ``paused`` keeps the stored value.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Query, Response, status

from distcron.api.auth import Authorized, require_token
from distcron.api.context import ApiContext, Context
from distcron.api.models import JobView, Removed, RunSummary, TriggerResult
from distcron.api.runs import read_launches
from distcron.cron import parse
from distcron.errors import Conflict, DistcronError, JobSpecError
from distcron.jobs import (
    API_SOURCE,
    JobSpec,
    OwnedByFile,
    build_spec,
    check_api_may_change,
    create_ops,
    keep_paused,
    owned,
)
from distcron.notify.senders import shown_url
from distcron.scheduler.records import LaunchRecord, manual_launch_id
from distcron.store import Compare, Delete, KeyValue, Put, Store
from distcron.store.layout import (
    JOBS,
    QUARANTINED,
    cursor_key,
    job_key,
    name_of,
    quarantine_key,
    trigger_key,
)

router = APIRouter(tags=["jobs"])
_authorized = [Depends(require_token)]


def _not_found(name: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, f"job {name!r} not found")


def _changed_concurrently(name: str) -> Conflict:
    return Conflict(job_key(name), "the job changed concurrently")


TakeOver = Annotated[bool, Query(
    description="change a job that a replica's config file defines: it becomes the API's")]
_OWNED: dict[int | str, dict[str, Any]] = {409: {
    "description": "the job changed meanwhile, or a config file defines it and take_over "
    "was not given"}}


def _may_change(stored: JobSpec, take_over: bool) -> None:
    try:
        check_api_may_change(stored, take_over)
    except OwnedByFile as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None


async def _read_job(store: Store, name: str) -> tuple[KeyValue, JobSpec]:
    kv = await store.get(job_key(name))
    if kv is None:
        raise _not_found(name)
    return kv, JobSpec.from_json(kv.value, source=job_key(name))


REDACTED = "<redacted: send the API token to see it>"


def _quarantine_reason(kv: KeyValue | None) -> str | None:
    if kv is None:
        return None
    try:
        return str(json.loads(kv.value)["reason"])
    except (ValueError, KeyError, TypeError):
        return "quarantined (its record cannot be read)"


def _view(spec: JobSpec, last: LaunchRecord | None, now: datetime,
          authorized: bool, quarantined: str | None = None) -> JobView:
    try:
        upcoming = parse(spec.schedule, tz=spec.timezone, job=spec.name).next(now)
    except DistcronError:
        upcoming = None  # stored before the edge refused it; the leader quarantines it
    summary = None if last is None else RunSummary.model_validate(last.model_dump())
    shown = spec.model_dump()
    if not authorized:
        # Environment values and an HTTP job's headers, body, and its URL's user
        # info and query often hold credentials (a notifier's URL is shown alike).
        shown["env"] = dict.fromkeys(spec.env, REDACTED)
        if spec.headers is not None:
            shown["headers"] = dict.fromkeys(spec.headers, REDACTED)
        if spec.url is not None:
            shown["url"] = shown_url(spec.url)
        if spec.body is not None:
            shown["body"] = REDACTED
    return JobView(**shown, next=upcoming and upcoming.astimezone(UTC), last_run=summary,
                   quarantined=quarantined)


@router.get("/jobs", response_model=list[JobView])
async def list_jobs(context: Context, authorized: Authorized) -> list[JobView]:
    """Every job, by name, with its next slot and latest launch."""
    kvs, _ = await context.store.range(JOBS)
    held, _ = await context.store.range(QUARANTINED)
    reasons = {name_of(kv.key, QUARANTINED): _quarantine_reason(kv) for kv in held}
    latest: dict[str, LaunchRecord] = {}
    for record in await read_launches(context.store):  # newest first
        latest.setdefault(record.job, record)
    now = context.clock.now()

    def views() -> list[JobView]:
        specs = [JobSpec.from_json(kv.value, source=kv.key) for kv in kvs]
        return [_view(spec, latest.get(spec.name), now, authorized, reasons.get(spec.name))
                for spec in specs]

    # CPU work for many jobs: off the event loop, which runs the lease keepalive.
    return await asyncio.to_thread(views)


@router.get("/jobs/{name}", response_model=JobView)
async def show_job(name: str, context: Context, authorized: Authorized) -> JobView:
    _, spec = await _read_job(context.store, name)
    launches = await read_launches(context.store, name)
    held = _quarantine_reason(await context.store.get(quarantine_key(name)))
    return _view(spec, launches[0] if launches else None, context.clock.now(), authorized,
                 held)


@router.put("/jobs/{name}", response_model=JobSpec, dependencies=_authorized,
            responses={201: {"description": "Created"}, **_OWNED})
async def put_job(
    name: str, body: Annotated[dict[str, Any], Body()], context: Context, response: Response,
    take_over: TakeOver = False,
) -> JobSpec:
    """Create or replace a job; the body is the spec (its ``name`` may be left out)."""
    if body.get("name", name) != name:
        raise JobSpecError(f"the body names job {body['name']!r} but the URL {name!r}",
                           job=name, field="name")
    now = context.clock.now()
    spec = owned(build_spec({**body, "name": name}, source=f"job {name!r}", now=now),
                 API_SOURCE)
    current = await context.store.get(job_key(name))
    if current is None:
        compare = Compare.missing(job_key(name))
        ops = create_ops(spec, now)
        response.status_code = status.HTTP_201_CREATED
    else:
        stored = JobSpec.from_json(current.value, source=current.key)
        _may_change(stored, take_over)
        spec = keep_paused(spec, stored)
        compare = Compare.modified_at(job_key(name), current.mod_revision)
        ops = [Put(job_key(name), spec.to_json().encode())]
    if not (await context.store.txn([compare], ops)).succeeded:
        raise _changed_concurrently(name)
    return spec


@router.delete("/jobs/{name}", response_model=Removed, dependencies=_authorized,
               responses=_OWNED)
async def remove_job(name: str, context: Context, take_over: TakeOver = False) -> Removed:
    """Remove a job and its cursor; its launch records stay. A config file's job
    comes back at the file's next reload unless it is removed from the file."""
    kv = await context.store.get(job_key(name))
    if kv is None:
        raise _not_found(name)
    try:
        stored = JobSpec.from_json(kv.value, source=kv.key)
    except JobSpecError:
        stored = None  # unreadable: whoever wrote it, removing it is the way out
    if stored is not None:
        _may_change(stored, take_over)
    result = await context.store.txn(
        [Compare.modified_at(kv.key, kv.mod_revision)],
        [Delete(job_key(name)), Delete(cursor_key(name))],
    )
    if not result.succeeded:
        raise _changed_concurrently(name)
    return Removed(job=name)


@router.post("/jobs/{name}/pause", response_model=JobSpec, dependencies=_authorized)
async def pause_job(name: str, context: Context) -> JobSpec:
    """Stop launching the job; its slots are recorded as skipped until it resumes."""
    return await _set_paused(context, name, paused=True)


@router.post("/jobs/{name}/resume", response_model=JobSpec, dependencies=_authorized)
async def resume_job(name: str, context: Context) -> JobSpec:
    return await _set_paused(context, name, paused=False)


async def _set_paused(context: ApiContext, name: str, *, paused: bool) -> JobSpec:
    kv, spec = await _read_job(context.store, name)
    if spec.paused == paused:
        return spec
    spec = spec.model_copy(update={"paused": paused})
    result = await context.store.txn(
        [Compare.modified_at(kv.key, kv.mod_revision)], [Put(kv.key, spec.to_json().encode())]
    )
    if not result.succeeded:
        raise _changed_concurrently(name)
    return spec


@router.post("/jobs/{name}/trigger", response_model=TriggerResult, dependencies=_authorized,
             status_code=status.HTTP_202_ACCEPTED)
async def trigger_job(name: str, context: Context) -> TriggerResult:
    """Ask the leader to run the job now; the answer is the launch id the run will have."""
    now = context.clock.now()
    trigger = TriggerResult(job=name, launch_id=manual_launch_id(name, now), requested_at=now)
    # The launch id doubles as the trigger id: unique, and it names what it asks for.
    result = await context.store.txn(
        [Compare.exists(job_key(name))],
        [Put(trigger_key(trigger.launch_id), json.dumps(trigger.model_dump(mode="json")).encode())],
    )
    if not result.succeeded:
        raise _not_found(name)
    return trigger
