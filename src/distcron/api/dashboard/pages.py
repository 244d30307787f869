"""The dashboard's pages, rendered on the server from the store, as anyone may read them.

Pages never see the API token: the browser keeps it (sessionStorage) and sends
it only with the actions (pause, resume, trigger) and the reading of a run's
output, both made by the page's script against the API's own routes. So a
job's spec is shown as the API shows it without the token: its secrets redacted.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, HTTPException, Query, status
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, select_autoescape

from distcron import __version__
from distcron.api import cluster, jobs
from distcron.api.context import ApiContext, Context
from distcron.api.dashboard import herd
from distcron.api.runs import read_launches
from distcron.cron import Schedule, parse
from distcron.errors import DistcronError, StoreError
from distcron.jobs import JobSpec
from distcron.scheduler.records import LaunchRecord, LaunchState
from distcron.store import KeyValue
from distcron.store.layout import JOBS, QUARANTINED, job_key, launch_key, name_of, quarantine_key

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 100
STRIP = 20  # launches in a job's strip on the jobs page
NEXT_SLOTS = 10
JOB_RUNS = 200  # launches on a job's page
HERD_MAX_AGE = 60.0  # seconds a herd is reused while the jobs are unchanged
PAUSED = "paused"
NEVER_RUN = "never-run"

_env = Environment(loader=PackageLoader("distcron.api.dashboard"),
                   autoescape=select_autoescape(default=True), trim_blocks=True,
                   lstrip_blocks=True)


def _path(value: str) -> str:
    return quote(value, safe="")


def _when(value: datetime | None, zone: str = "UTC") -> str:
    if value is None:
        return ""
    local = value.astimezone(ZoneInfo(zone))
    return local.strftime("%Y-%m-%d %H:%M:%S ") + (local.tzname() or zone)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s"


def _value(value: object) -> str:
    """A spec's or record's value as in JSON, a string as it is."""
    return value if isinstance(value, str) else json.dumps(value)


_env.filters["path"] = _path
_env.filters["value"] = _value
_env.filters["when"] = _when
_env.filters["duration"] = _duration
_env.globals["version"] = __version__


def _render(template: str, **values: object) -> HTMLResponse:
    return HTMLResponse(_env.get_template(template).render(**values))


def _schedule(spec: JobSpec) -> Schedule | None:
    try:
        return parse(spec.schedule, tz=spec.timezone, job=spec.name)
    except DistcronError:
        return None  # stored before the edge refused it; the leader quarantines it


def _seconds(record: LaunchRecord) -> float | None:
    if record.started_at is None or record.ended_at is None:
        return None
    return max(0.0, (record.ended_at - record.started_at).total_seconds())


@dataclass(frozen=True, slots=True)
class JobRow:
    spec: JobSpec
    words: str
    next_slot: datetime | None
    last: LaunchRecord | None
    strip: list[LaunchRecord]  # oldest first
    quarantined: str | None  # why the leader gives it no slots


async def _specs(context: ApiContext) -> tuple[list[KeyValue], list[JobSpec]]:
    kvs, _ = await context.store.range(JOBS)
    specs = await asyncio.to_thread(
        lambda: [JobSpec.from_json(kv.value, source=kv.key) for kv in kvs])
    return kvs, specs


@router.get("/", response_class=HTMLResponse)
async def jobs_page(
    context: Context,
    name: str = "",
    tag: str = "",
    state: str = "",
    page: Annotated[int, Query(ge=1)] = 1,
) -> HTMLResponse:
    """Every job (a page of them), filtered by name (a part of it), tag and state."""
    states = [PAUSED, NEVER_RUN, *LaunchState]
    if state and state not in states:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            f"state {state!r} is not one of: {', '.join(states)}")
    _, specs = await _specs(context)
    held, _ = await context.store.range(QUARANTINED)
    reasons = {name_of(kv.key, QUARANTINED): jobs._quarantine_reason(kv) for kv in held}
    by_job: dict[str, list[LaunchRecord]] = {}
    for record in await read_launches(context.store):  # newest first
        if record.ahead:  # its next slot, shown as such; not one of its runs yet
            continue
        runs = by_job.setdefault(record.job, [])
        if len(runs) < STRIP:
            runs.append(record)
    tags = sorted({t for spec in specs for t in spec.tags})
    chosen = [spec for spec in specs
              if name.lower() in spec.name.lower() and (not tag or tag in spec.tags)
              and _in_state(spec, by_job.get(spec.name), state)]
    pages = max(1, -(-len(chosen) // PAGE_SIZE))
    page = min(page, pages)
    now = context.clock.now()

    def rows() -> list[JobRow]:
        shown = chosen[(page - 1) * PAGE_SIZE: page * PAGE_SIZE]
        return [_row(spec, by_job.get(spec.name, []), now, reasons.get(spec.name))
                for spec in shown]

    def link(to: int) -> str:
        query = {k: v for k, v in (("name", name), ("tag", tag), ("state", state)) if v}
        return "/?" + urlencode({**query, "page": to})

    return _render(
        "jobs.html", title="Jobs", rows=await asyncio.to_thread(rows), total=len(specs),
        matching=len(chosen), page=page, pages=pages, link=link, name=name, tag=tag,
        state=state, tags=tags, states=states, now=now)


def _in_state(spec: JobSpec, runs: list[LaunchRecord] | None, state: str) -> bool:
    if not state:
        return True
    if state == PAUSED:
        return spec.paused
    if state == NEVER_RUN:
        return not runs
    return runs is not None and len(runs) > 0 and runs[0].state == state


def _row(spec: JobSpec, runs: list[LaunchRecord], now: datetime,
         quarantined: str | None) -> JobRow:
    schedule = _schedule(spec)
    upcoming = None
    if schedule is not None:
        try:
            upcoming = schedule.next(now)
        except DistcronError:
            upcoming = None
    return JobRow(spec=spec, words=schedule.describe() if schedule else "not a valid schedule",
                  next_slot=upcoming, last=runs[0] if runs else None, strip=runs[::-1],
                  quarantined=quarantined)


@router.get("/ui/jobs/{name}", response_class=HTMLResponse)
async def job_page(name: str, context: Context) -> HTMLResponse:
    """One job: its spec, its next slots, and its launches as a timeline."""
    kv = await context.store.get(job_key(name))
    if kv is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"job {name!r} not found")
    spec = JobSpec.from_json(kv.value, source=kv.key)
    runs = (await read_launches(context.store, name))[:JOB_RUNS]
    now = context.clock.now()
    schedule = _schedule(spec)
    upcoming: list[datetime] = []
    if schedule is not None:
        upcoming = [slot for _, slot in zip(range(NEXT_SLOTS), schedule.iter(now),
                                            strict=False)]
    held = jobs._quarantine_reason(await context.store.get(quarantine_key(name)))
    view = jobs._view(spec, runs[0] if runs else None, now, authorized=False, quarantined=held)
    shown = view.model_dump(mode="json", exclude={"next", "last_run"}, exclude_defaults=True)
    longest = max((_seconds(r) or 0.0 for r in runs), default=0.0)
    return _render(
        "job.html", title=f"Job {name}", spec=spec, shown=shown,
        words=schedule.describe() if schedule else "not a valid schedule",
        upcoming=upcoming, runs=runs, seconds=_seconds, longest=longest or 1.0, now=now)


@router.get("/ui/runs/{launch_id:path}", response_class=HTMLResponse)
async def run_page(launch_id: str, context: Context) -> HTMLResponse:
    """One launch: its record, and its output, which the page's script reads (and
    follows while the launch is live) with the token."""
    kv = await context.store.get(launch_key(launch_id))
    if kv is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"launch {launch_id!r} not found")
    record = LaunchRecord.from_json(kv.value)
    fields = record.model_dump(mode="json", exclude_defaults=True)
    return _render("run.html", title=f"Run {launch_id}", record=record, fields=fields,
                   seconds=_seconds(record))


@router.get("/ui/cluster", response_class=HTMLResponse)
async def cluster_page(context: Context) -> HTMLResponse:
    """The replicas (leader, fence, lag, health), the workers (slots, running, load,
    tags) and the store's members, where the store can tell (etcd)."""
    problem: str | None = None
    try:
        members = await context.store.members()
    except StoreError as exc:
        members, problem = [], f"the store did not say: {exc}"
    return _render("cluster.html", title="Cluster",
                   status=await cluster.cluster_status(context), members=members,
                   members_problem=problem)


@dataclass(slots=True)
class _Cached:
    fingerprint: tuple[tuple[str, int], ...]
    at: float
    herd: herd.Herd


_herd_cache: dict[int, _Cached] = {}  # by id of the store: one app per store in a process


@router.get("/ui/herd", response_class=HTMLResponse)
async def herd_page(context: Context) -> HTMLResponse:
    """Launches per minute over the next 24 hours, all jobs together; the hottest minutes
    named with the jobs that make them. Paused jobs are left out: they launch nothing."""
    kvs, specs = await _specs(context)
    fingerprint = tuple((kv.key, kv.mod_revision) for kv in kvs)
    cached = _herd_cache.get(id(context.store))
    if (cached is None or cached.fingerprint != fingerprint
            or time.monotonic() - cached.at > HERD_MAX_AGE):
        now = context.clock.now()

        def count() -> herd.Herd:
            schedules = [(spec.name, s) for spec in specs
                         if not spec.paused and (s := _schedule(spec)) is not None]
            return herd.compute(schedules, now)

        cached = _Cached(fingerprint, time.monotonic(), await asyncio.to_thread(count))
        _herd_cache[id(context.store)] = cached
    result = cached.herd
    return _render("herd.html", title="Herd", herd=result, chart=_chart(result),
                   paused=sum(spec.paused for spec in specs))


CHART_HEIGHT = 160


def _chart(result: herd.Herd) -> str:
    """An SVG path of one vertical stroke per minute, as high as its launches."""
    scale = CHART_HEIGHT / max(result.peak, 1)
    return " ".join(f"M{m + 0.5},{CHART_HEIGHT}v-{count * scale:.1f}"
                    for m, count in enumerate(result.per_minute) if count)
