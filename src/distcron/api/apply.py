"""``POST /jobs/apply``: a whole jobs file, all or nothing.

The file is the whole set of jobs, like an installed crontab: jobs in the store
but not in the file are removed unless ``prune`` is false. Every job is
validated first (any problem: 422 listing all of them, nothing changed), then
the diff is written in one transaction that compares the ``mod_revision`` of
every job key it read (and the absence of every job it adds), so an edit made
meanwhile fails the whole apply with 409 instead of being overwritten.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from fastapi import APIRouter, Depends

from distcron.api.auth import require_token
from distcron.api.context import Context
from distcron.api.jobs import create_ops, keep_paused
from distcron.api.models import ApplyRequest, ApplyResult
from distcron.errors import Conflict
from distcron.jobs import JobSpec, parse_jobs_toml
from distcron.store import Compare, Delete, KeyValue, Op, Put
from distcron.store.layout import JOBS, cursor_key, job_key, name_of

router = APIRouter(tags=["jobs"])


@dataclass
class JobsDiff:
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    compares: list[Compare] = field(default_factory=list)
    ops: list[Op] = field(default_factory=list)


def diff_jobs(specs: list[JobSpec], stored: dict[str, KeyValue], *, prune: bool,
              now: datetime) -> JobsDiff:
    """What applying ``specs`` over the ``stored`` job keys changes, and the guarded writes."""
    diff = JobsDiff()
    for spec in specs:
        kv = stored.get(spec.name)
        if kv is None:
            diff.added.append(spec.name)
            diff.compares.append(Compare.missing(job_key(spec.name)))
            diff.ops.extend(create_ops(spec, now))
            continue
        old = JobSpec.from_json(kv.value, source=kv.key)
        new = keep_paused(spec, old)
        # Guarded even when unchanged: the store must end up as the file says.
        diff.compares.append(Compare.modified_at(kv.key, kv.mod_revision))
        if new.to_json() == old.to_json():
            diff.unchanged.append(spec.name)
        else:
            diff.changed.append(spec.name)
            diff.ops.append(Put(kv.key, new.to_json().encode()))
    in_file = {spec.name for spec in specs}
    for name, kv in stored.items():
        if prune and name not in in_file:
            diff.removed.append(name)
            diff.compares.append(Compare.modified_at(kv.key, kv.mod_revision))
            diff.ops.extend((Delete(kv.key), Delete(cursor_key(name))))
    return diff


@router.post("/jobs/apply", response_model=ApplyResult, dependencies=[Depends(require_token)])
async def apply_jobs(request: ApplyRequest, context: Context) -> ApplyResult:
    """Make the store's jobs what the TOML file says (see ``prune``), atomically."""
    specs = parse_jobs_toml(request.toml, request.source)
    kvs, revision = await context.store.range(JOBS)
    stored = {name_of(kv.key, JOBS): kv for kv in kvs}
    diff = diff_jobs(specs, stored, prune=request.prune, now=context.clock.now())
    if diff.ops and not request.dry_run:
        result = await context.store.txn(diff.compares, diff.ops)
        if not result.succeeded:
            raise Conflict(JOBS, "jobs changed while the file was being applied")
        revision = result.revision
    return ApplyResult(
        added=sorted(diff.added), changed=sorted(diff.changed), removed=sorted(diff.removed),
        unchanged=sorted(diff.unchanged), dry_run=request.dry_run, revision=revision,
    )
