"""``distcron runs``: launch records, newest first, and one run with its output."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import click

from distcron.cli.client import ApiClient, client_options, print_json, wants_json
from distcron.cli.render import fields, relative, table, text
from distcron.scheduler.records import LaunchState


@click.group("runs", invoke_without_command=True,
             short_help="Runs, newest first; one with its output.")
@click.option("--job", help="Only this job's runs.")
@click.option("--state", type=click.Choice([s.value for s in LaunchState]),
              help="Only runs in this state.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True)
@client_options
@click.pass_context
def runs_command(ctx: click.Context, job: str | None, state: str | None, limit: int) -> None:
    """Runs, newest first; `distcron runs show LAUNCH_ID` for one with its output."""
    if ctx.invoked_subcommand is not None:
        return
    params = {"job": job, "state": state, "limit": limit}
    runs = ApiClient.from_context(ctx).call(
        "GET", "/runs", params={k: v for k, v in params.items() if v is not None})
    if wants_json(ctx):
        print_json(runs)
        return
    now = datetime.now(UTC)
    rows = [
        (run["launch_id"], _state(run), text(run["worker"]), text(run["exit_code"]),
         relative(run["started_at"], now), relative(run["ended_at"], now))
        for run in runs
    ]
    click.echo(table(("LAUNCH ID", "STATE", "WORKER", "EXIT", "STARTED", "ENDED"), rows))


def _state(run: dict[str, Any]) -> str:
    # A launch a batch scheduler (Slurm) has not started yet says why it waits.
    if run.get("cause") == "waiting_for_resources":
        return f"{run['state']} ({run.get('reason') or 'waiting for resources'})"
    return str(run["state"])


@runs_command.command("show", short_help="One run's record and output.")
@click.argument("launch_id")
@client_options
@click.pass_context
def show_run(ctx: click.Context, launch_id: str) -> None:
    """One run's record, and its output when the token is known (output may hold secrets)."""
    client = ApiClient.from_context(ctx)
    with_output = client.has_token
    run = client.call(
        "GET", f"/runs/{quote(launch_id, safe='@:')}",
        params={"output": "true"} if with_output else None)
    if wants_json(ctx):
        print_json(run)
        return
    output = run.pop("output")
    click.echo(fields((key, text(value)) for key, value in run.items() if value not in (None, "")))
    if not with_output:
        click.echo("(output not shown: set DISTCRON_TOKEN to read it)")
    elif output:
        click.echo("--- output ---")
        click.echo(output, nl=not output.endswith("\n"))
