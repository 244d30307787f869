"""``POST /jobs/apply``: a whole jobs file, all or nothing, as the API's job set
(and its ``[[notifier]]`` tables as the API's notifiers).

The rules (what an apply may change, prune and take over, how it is guarded
and written whole, through a journal when large) are
:mod:`distcron.jobs.jobset`'s; this is their HTTP edge. A job defined in a
replica's config file is refused with 409 naming the file unless the request
takes it over; a race with another edit, or with an apply in progress, is 409 too;
an invalid file (or one of more than :data:`MAX_APPLY_JOBS` jobs, or nested
too deep) is 422 listing every problem, and changes nothing; a body too large
is 413 (see :mod:`distcron.api.limits`). The file is read off the event loop,
which keeps the leader's lease.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, HTTPException, status

from distcron.api.auth import require_token
from distcron.api.context import Context
from distcron.api.models import ERRORS, ApplyRequest, ApplyResult
from distcron.jobs import (
    API_SOURCE,
    OwnedByFile,
    diff_jobs,
    diff_notifiers,
    parse_jobs_file,
    write_diff,
)
from distcron.store.layout import JOBS, NOTIFIERS, name_of

router = APIRouter(tags=["jobs"], responses=ERRORS)

# Jobs one apply may hold: beyond it, the diff and its writes hold the store and
# the leader too long. A replica's config file is not bound by it.
MAX_APPLY_JOBS = 10_000


@router.post("/jobs/apply", response_model=ApplyResult, dependencies=[Depends(require_token)],
             responses={409: {"description": "a job changed meanwhile, or belongs to a "
                              "config file and was not taken over"}})
async def apply_jobs(request: ApplyRequest, context: Context) -> ApplyResult:
    """Make the API's jobs what the TOML file says (see ``prune``), atomically."""
    now = context.clock.now()
    # CPU work for a large file: off the event loop, which runs the lease keepalive.
    found = await asyncio.to_thread(parse_jobs_file, request.toml, request.source, now=now,
                                    max_jobs=MAX_APPLY_JOBS)
    kvs, revision = await context.store.range(JOBS)
    stored = {name_of(kv.key, JOBS): kv for kv in kvs}
    notifier_kvs, _ = await context.store.range(NOTIFIERS)
    notifiers = {name_of(kv.key, NOTIFIERS): kv for kv in notifier_kvs}
    try:
        diff = await asyncio.to_thread(
            diff_jobs, found.jobs, stored, source=API_SOURCE, prune=request.prune, now=now,
            take_over=request.take_over)
        diff_notifiers(diff, found.jobs, found.notifiers, notifiers, source=API_SOURCE,
                       prune=request.prune, file=request.source, take_over=request.take_over)
    except OwnedByFile as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    if diff.changes and not request.dry_run:
        revision = await write_diff(context.store, diff, now)
    return ApplyResult(
        added=sorted(diff.added), changed=sorted(diff.changed), removed=sorted(diff.removed),
        unchanged=sorted(diff.unchanged), changes=dict(sorted(diff.changed.items())),
        dry_run=request.dry_run, revision=revision,
        notifiers_added=sorted(diff.notifiers_added),
        notifiers_changed=sorted(diff.notifiers_changed),
        notifiers_removed=sorted(diff.notifiers_removed),
    )
