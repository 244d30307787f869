"""``POST /jobs/apply``: a whole jobs file, all or nothing, as the API's job set.

The rules (what an apply may change, prune and take over, how it is guarded
and written in parts) are :mod:`distcron.jobs.jobset`'s; this is their HTTP
edge. A job defined in a replica's config file is refused with 409 naming the
file unless the request takes it over; a race with another edit is 409 too;
an invalid file is 422 listing every problem, and changes nothing.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, HTTPException, status

from distcron.api.auth import require_token
from distcron.api.context import Context
from distcron.api.models import ApplyRequest, ApplyResult
from distcron.jobs import API_SOURCE, OwnedByFile, diff_jobs, parse_jobs_toml, write_diff
from distcron.store.layout import JOBS, name_of

router = APIRouter(tags=["jobs"])


@router.post("/jobs/apply", response_model=ApplyResult, dependencies=[Depends(require_token)],
             responses={409: {"description": "a job changed meanwhile, or belongs to a "
                              "config file and was not taken over"}})
async def apply_jobs(request: ApplyRequest, context: Context) -> ApplyResult:
    """Make the API's jobs what the TOML file says (see ``prune``), atomically."""
    now = context.clock.now()
    # CPU work for a large file: off the event loop, which runs the lease keepalive.
    specs = await asyncio.to_thread(parse_jobs_toml, request.toml, request.source, now=now)
    kvs, revision = await context.store.range(JOBS)
    stored = {name_of(kv.key, JOBS): kv for kv in kvs}
    try:
        diff = await asyncio.to_thread(
            diff_jobs, specs, stored, source=API_SOURCE, prune=request.prune, now=now,
            take_over=request.take_over)
    except OwnedByFile as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    if diff.changes and not request.dry_run:
        revision = await write_diff(context.store, diff)
    return ApplyResult(
        added=sorted(diff.added), changed=sorted(diff.changed), removed=sorted(diff.removed),
        unchanged=sorted(diff.unchanged), changes=dict(sorted(diff.changed.items())),
        dry_run=request.dry_run, revision=revision,
    )
