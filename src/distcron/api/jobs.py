"""``/jobs``: read, create, replace, remove, pause, resume, trigger and backfill jobs.

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
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Query, Response, status

from distcron.api.auth import Authorized, require_token
from distcron.api.context import ApiContext, Context
from distcron.api.models import (
    ERRORS,
    BackfillRequest,
    BackfillResult,
    BackfillSlot,
    JobView,
    Removed,
    RunSummary,
    TriggerResult,
)
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
from distcron.jobs.journal import no_apply, refusal
from distcron.notify.senders import shown_url
from distcron.scheduler.records import LaunchRecord, launch_id_for, manual_launch_id
from distcron.store import Compare, Delete, KeyValue, Put, Store
from distcron.store.layout import (
    JOBS,
    QUARANTINED,
    cursor_key,
    job_key,
    launch_key,
    name_of,
    quarantine_key,
    trigger_key,
)
from distcron.timefmt import utc_iso

router = APIRouter(tags=["jobs"], responses=ERRORS)
_authorized = [Depends(require_token)]


def _not_found(name: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, f"job {name!r} not found")


async def _changed_concurrently(store: Store, name: str) -> Conflict:
    return await refusal(store, job_key(name), "the job changed concurrently")


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
        if not record.ahead:
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
    latest = next((record for record in launches if not record.ahead), None)
    return _view(spec, latest, context.clock.now(), authorized, held)


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
    if not (await context.store.txn([compare, no_apply()], ops)).succeeded:
        raise await _changed_concurrently(context.store, name)
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
        [Compare.modified_at(kv.key, kv.mod_revision), no_apply()],
        [Delete(job_key(name)), Delete(cursor_key(name))],
    )
    if not result.succeeded:
        raise await _changed_concurrently(context.store, name)
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
        [Compare.modified_at(kv.key, kv.mod_revision), no_apply()],
        [Put(kv.key, spec.to_json().encode())])
    if not result.succeeded:
        raise await _changed_concurrently(context.store, name)
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


# Slots one backfill may ask for: a range is a deliberate act, not a replay of years.
MAX_BACKFILL_SLOTS = 1000


def _bad_range(message: str, job: str, field: str) -> JobSpecError:
    """A 422 in the shape of every other (one problem, naming the field)."""
    return JobSpecError(message, job=job, field=field)


def _slots_between(spec: JobSpec, request: BackfillRequest, now: datetime) -> list[datetime]:
    """The job's slots in [from, to], refused when the range is not a past one
    or holds more than MAX_BACKFILL_SLOTS."""
    start, end = request.start.astimezone(UTC), request.end.astimezone(UTC)
    if end > now:
        raise _bad_range(f"backfill of job {spec.name!r}: 'to' ({utc_iso(end)}) is in the "
                         f"future (now is {utc_iso(now)}): only past slots are backfilled",
                         spec.name, "to")
    if start > end:
        raise _bad_range(f"backfill of job {spec.name!r}: 'from' ({utc_iso(start)}) is after "
                         f"'to' ({utc_iso(end)})", spec.name, "from")
    schedule = parse(spec.schedule, tz=spec.timezone, job=spec.name)
    found: list[datetime] = []
    for local in schedule.iter(start - timedelta(microseconds=1)):
        slot = local.astimezone(UTC)
        if slot > end:
            break
        if len(found) == MAX_BACKFILL_SLOTS:
            raise _bad_range(f"backfill of job {spec.name!r}: the range holds more than "
                             f"{MAX_BACKFILL_SLOTS} slots; ask for a shorter one",
                             spec.name, "to")
        found.append(slot)
    return found


def _covering(records: list[LaunchRecord], slots: list[datetime]) -> dict[datetime, LaunchRecord]:
    """The record that accounts for each slot that has one (its own, or a span's)."""
    covered: dict[datetime, LaunchRecord] = {}
    wanted = set(slots)
    for record in records:
        if record.slot is None:
            continue
        if record.until is None:
            if record.slot in wanted:
                covered[record.slot] = record
            continue
        for slot in slots:
            if record.slot <= slot <= record.until:
                covered[slot] = record
    return covered


@router.post("/jobs/{name}/backfill", response_model=BackfillResult, dependencies=_authorized,
             status_code=status.HTTP_202_ACCEPTED)
async def backfill_job(name: str, request: BackfillRequest, context: Context) -> BackfillResult:
    """Launch each slot of a past range once, as ``<job>@<slot>``; a slot that
    already has a record is left as it is and listed. The leader launches them
    (under its fence, by the job's overlap policy)."""
    _, spec = await _read_job(context.store, name)
    now = context.clock.now()
    slots = _slots_between(spec, request, now)
    covered = _covering(await read_launches(context.store, name), slots)
    existing = [BackfillSlot(launch_id=covered[s].launch_id, slot=s, state=covered[s].state)
                for s in slots if s in covered]
    missing = [s for s in slots if s not in covered]
    launched = [BackfillSlot(launch_id=launch_id_for(name, s), slot=s) for s in missing]
    if not request.dry_run:
        for item in launched:
            # The trigger is written only while the slot has no record (and the
            # job exists); its id is the launch id, so asking twice asks once.
            body = {"job": name, "launch_id": item.launch_id, "slot": utc_iso(item.slot),
                    "requested_at": utc_iso(now)}
            result = await context.store.txn(
                [Compare.exists(job_key(name)), Compare.missing(launch_key(item.launch_id))],
                [Put(trigger_key(item.launch_id), json.dumps(body).encode())])
            if not result.succeeded:
                kv = await context.store.get(launch_key(item.launch_id))
                if kv is None:
                    raise _not_found(name)
                existing.append(BackfillSlot(launch_id=item.launch_id, slot=item.slot,
                                             state=LaunchRecord.from_json(kv.value).state))
        launched = [i for i in launched if i.launch_id not in {e.launch_id for e in existing}]
    existing.sort(key=lambda e: e.slot)
    return BackfillResult(job=name, launched=launched, existing=existing,
                          dry_run=request.dry_run)
