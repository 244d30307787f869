"""``distcron jobs``: list, show, apply, remove, pause, resume, trigger and backfill jobs."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import click

from distcron.cli.client import ApiClient, client_options, print_json, wants_json
from distcron.cli.render import fields, relative, shown_state, table, text
from distcron.durations import format_duration

# Spec keys that hold seconds, shown as people write them ("1h", "90s").
_DURATIONS = frozenset({"timeout", "starting_deadline", "retry_backoff"})


@click.group("jobs", short_help="List, show, apply, pause, resume, trigger, backfill jobs.")
@client_options
def jobs_command() -> None:
    """Jobs on a replica's API (token from DISTCRON_TOKEN for changes)."""


def _job_path(name: str, action: str = "") -> str:
    return f"/jobs/{quote(name, safe='')}" + (f"/{action}" if action else "")


def _last(job: dict[str, Any], now: datetime) -> str:
    last = job.get("last_run")
    if not last:
        return "-"
    when = last["ended_at"] or last["started_at"] or last["slot"]
    return f"{shown_state(last)} {relative(when, now)}"


@jobs_command.command("list")
@client_options
@click.pass_context
def list_jobs(ctx: click.Context) -> None:
    """Every job with its next slot and latest run."""
    jobs = ApiClient.from_context(ctx).call("GET", "/jobs")
    if wants_json(ctx):
        print_json(jobs)
        return
    now = datetime.now(UTC)
    rows = [
        (job["name"], job["schedule"], job["timezone"],
         "quarantined" if job.get("quarantined") else "paused" if job["paused"]
         else relative(job["next"], now), _last(job, now),
         job.get("source") or "-")
        for job in jobs
    ]
    click.echo(table(("NAME", "SCHEDULE", "TZ", "NEXT", "LAST RUN", "SOURCE"), rows))


@jobs_command.command("show")
@click.argument("name")
@client_options
@click.pass_context
def show_job(ctx: click.Context, name: str) -> None:
    """One job's spec, next slot and latest run."""
    job = ApiClient.from_context(ctx).call("GET", _job_path(name))
    if wants_json(ctx):
        print_json(job)
        return
    now = datetime.now(UTC)
    pairs = [(key, format_duration(value) if key in _DURATIONS else text(value))
             for key, value in job.items()
             if key not in ("next", "last_run") and value not in (None, {}, [])]
    pairs.append(("next", f"{job['next']} ({relative(job['next'], now)})"))
    pairs.append(("last run", _last(job, now)))
    click.echo(fields(pairs))


@jobs_command.command("apply")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Show what would change; change nothing.")
@click.option("--prune/--no-prune", default=True, show_default=True,
              help="Remove the API's jobs that are not in the file (the file is the whole "
              "set; jobs of a replica's config file are never removed).")
@click.option("--take-over", is_flag=True,
              help="Also change jobs that a replica's config file defines: they become "
              "the API's (without it, such a job is refused).")
@client_options
@click.pass_context
def apply_jobs(ctx: click.Context, file: Path, dry_run: bool, prune: bool,
               take_over: bool) -> None:
    """Make the API's jobs what FILE (TOML) says, all or nothing."""
    body = {"toml": file.read_text(encoding="utf-8"), "dry_run": dry_run, "prune": prune,
            "source": str(file), "take_over": take_over}
    diff = ApiClient.from_context(ctx).call("POST", "/jobs/apply", body=body)
    if wants_json(ctx):
        print_json(diff)
        return
    changes = diff.get("changes", {})
    changed = [f"{name} ({', '.join(changes[name])})" if changes.get(name) else name
               for name in diff["changed"]]
    pairs = [("added", ", ".join(diff["added"]) or "-"), ("changed", ", ".join(changed) or "-"),
             ("removed", ", ".join(diff["removed"]) or "-"),
             ("unchanged", ", ".join(diff["unchanged"]) or "-")]
    notifiers = [(f"notifiers {what}", ", ".join(names)) for what in
                 ("added", "changed", "removed") if (names := diff.get(f"notifiers_{what}"))]
    click.echo(fields([*pairs, *notifiers]))
    done = f"applied (revision {diff['revision']})"
    click.echo("dry run: nothing was changed" if dry_run else done)


def _act(ctx: click.Context, method: str, path: str, done: str) -> None:
    answer = ApiClient.from_context(ctx).call(method, path)
    if wants_json(ctx):
        print_json(answer)
    else:
        click.echo(done.format(**answer))


@jobs_command.command("remove")
@click.argument("name")
@click.option("--take-over", is_flag=True,
              help="Remove it even if a replica's config file defines it (it comes back at "
              "the file's next reload unless it is removed from the file too).")
@client_options
@click.pass_context
def remove_job(ctx: click.Context, name: str, take_over: bool) -> None:
    """Remove a job (its run history stays)."""
    path = _job_path(name) + ("?take_over=true" if take_over else "")
    _act(ctx, "DELETE", path, "removed job {job}")


@jobs_command.command("pause")
@click.argument("name")
@client_options
@click.pass_context
def pause_job(ctx: click.Context, name: str) -> None:
    """Stop launching a job; its slots are recorded as skipped."""
    _act(ctx, "POST", _job_path(name, "pause"), "paused job {name}")


@jobs_command.command("resume")
@click.argument("name")
@client_options
@click.pass_context
def resume_job(ctx: click.Context, name: str) -> None:
    """Launch a paused job again."""
    _act(ctx, "POST", _job_path(name, "resume"), "resumed job {name}")


@jobs_command.command("trigger", short_help="Run a job now; prints the launch id.")
@click.argument("name")
@client_options
@click.pass_context
def trigger_job(ctx: click.Context, name: str) -> None:
    """Run a job now; prints the launch id (see it with `distcron runs show`)."""
    _act(ctx, "POST", _job_path(name, "trigger"), "triggered job {job}: launch {launch_id}")


def _instant(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """An ISO-8601 instant with its offset (or ``Z``), passed on as given."""
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO-8601 instant "
                                 "(e.g. 2026-11-24T06:00:00Z)") from None
    if when.tzinfo is None:
        raise click.BadParameter(f"{value!r} has no offset: add Z or e.g. +01:00")
    return value


@jobs_command.command("backfill", short_help="Launch each slot of a past range once.")
@click.argument("name")
@click.option("--from", "start", required=True, callback=_instant, metavar="ISO8601",
              help="The range's first instant (slots at or after it).")
@click.option("--to", "end", required=True, callback=_instant, metavar="ISO8601",
              help="The range's last instant (slots at or before it; not in the future).")
@click.option("--dry-run", is_flag=True, help="List what would run; launch nothing.")
@client_options
@click.pass_context
def backfill_job(ctx: click.Context, name: str, start: str, end: str, dry_run: bool) -> None:
    """Launch each slot of the job in a past range once, as NAME@SLOT (at most 1000
    slots). A slot that already has a record is left as it is and listed. The
    leader launches them by the job's overlap policy."""
    result = ApiClient.from_context(ctx).call(
        "POST", _job_path(name, "backfill"),
        body={"from": start, "to": end, "dry_run": dry_run})
    if wants_json(ctx):
        print_json(result)
        return
    launched, existing = result["launched"], result["existing"]
    verb = "would launch" if dry_run else "launching"
    click.echo(f"{verb} {len(launched)} slot{'s' if len(launched) != 1 else ''} of job {name}"
               + (":" if launched else ""))
    for item in launched:
        click.echo(f"  {item['launch_id']}")
    if existing:
        click.echo(f"left as they are ({len(existing)} already recorded):")
        click.echo(table(("LAUNCH ID", "SLOT", "STATE"),
                         [(e["launch_id"], e["slot"], e["state"] or "-") for e in existing]))
