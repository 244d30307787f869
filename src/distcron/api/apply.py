"""``POST /jobs/apply``: a whole jobs file, all or nothing.

The file is the whole set of jobs, like an installed crontab: jobs in the store
but not in the file are removed unless ``prune`` is false. Every job is
validated first (any problem: 422 listing all of them, nothing changed), then
the diff is written in one transaction that compares the ``mod_revision`` of
every job key it read (and the absence of every job it adds), so an edit made
meanwhile fails the whole apply with 409 instead of being overwritten.

A diff larger than one transaction may be (etcd's ``--max-txn-ops``, 128 by
default) is written in parts of whole jobs, each guarded the same way. An edit
made meanwhile then stops the apply at the part it touches, with 409 saying
how many parts were written; applying the file again finishes the job.
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
from distcron.store import Compare, Delete, KeyValue, Op, Put, Store
from distcron.store.layout import JOBS, cursor_key, job_key, name_of

router = APIRouter(tags=["jobs"])


@dataclass
class JobsDiff:
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    # Per job: its guards and its writes (none when unchanged), kept together.
    groups: list[tuple[list[Compare], list[Op]]] = field(default_factory=list)

    def add(self, compare: Compare, ops: list[Op]) -> None:
        self.groups.append(([compare], ops))

    @property
    def changes(self) -> bool:
        return any(ops for _, ops in self.groups)

    def transactions(self, limit: int | None) -> list[tuple[list[Compare], list[Op]]]:
        """The diff as transactions of whole jobs within ``limit`` comparisons
        and operations each: just one when it fits."""
        batches: list[tuple[list[Compare], list[Op]]] = []
        compares: list[Compare] = []
        ops: list[Op] = []
        for job_compares, job_ops in self.groups:
            if limit is not None and compares and (
                    len(compares) + len(job_compares) > limit or len(ops) + len(job_ops) > limit):
                batches.append((compares, ops))
                compares, ops = [], []
            compares += job_compares
            ops += job_ops
        if compares:
            batches.append((compares, ops))
        return batches


def diff_jobs(specs: list[JobSpec], stored: dict[str, KeyValue], *, prune: bool,
              now: datetime) -> JobsDiff:
    """What applying ``specs`` over the ``stored`` job keys changes, and the guarded writes."""
    diff = JobsDiff()
    for spec in specs:
        kv = stored.get(spec.name)
        if kv is None:
            diff.added.append(spec.name)
            diff.add(Compare.missing(job_key(spec.name)), list(create_ops(spec, now)))
            continue
        old = JobSpec.from_json(kv.value, source=kv.key)
        new = keep_paused(spec, old)
        # Guarded even when unchanged: the store must end up as the file says.
        guard = Compare.modified_at(kv.key, kv.mod_revision)
        if new.to_json() == old.to_json():
            diff.unchanged.append(spec.name)
            diff.add(guard, [])
        else:
            diff.changed.append(spec.name)
            diff.add(guard, [Put(kv.key, new.to_json().encode())])
    in_file = {spec.name for spec in specs}
    for name, kv in stored.items():
        if prune and name not in in_file:
            diff.removed.append(name)
            diff.add(Compare.modified_at(kv.key, kv.mod_revision),
                     [Delete(kv.key), Delete(cursor_key(name))])
    return diff


async def write_diff(store: Store, diff: JobsDiff) -> int:
    """Write the diff (see the module docstring); returns the last revision written.
    Raises Conflict when a job changed since it was read."""
    batches = diff.transactions(store.max_txn_ops)
    revision = 0
    for written, (compares, ops) in enumerate(batches):
        result = await store.txn(compares, ops)
        if not result.succeeded:
            done = f"; {written} of {len(batches)} parts were written, apply again to finish" \
                if written else ""
            raise Conflict(JOBS, f"jobs changed while the file was being applied{done}")
        revision = result.revision
    return revision


@router.post("/jobs/apply", response_model=ApplyResult, dependencies=[Depends(require_token)])
async def apply_jobs(request: ApplyRequest, context: Context) -> ApplyResult:
    """Make the store's jobs what the TOML file says (see ``prune``), atomically."""
    specs = parse_jobs_toml(request.toml, request.source)
    kvs, revision = await context.store.range(JOBS)
    stored = {name_of(kv.key, JOBS): kv for kv in kvs}
    diff = diff_jobs(specs, stored, prune=request.prune, now=context.clock.now())
    if diff.changes and not request.dry_run:
        revision = await write_diff(context.store, diff)
    return ApplyResult(
        added=sorted(diff.added), changed=sorted(diff.changed), removed=sorted(diff.removed),
        unchanged=sorted(diff.unchanged), dry_run=request.dry_run, revision=revision,
    )
