"""``distcron runs``: launch records, newest first, and one run with its output."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import click

from distcron.cli.client import (
    ApiClient,
    ClientError,
    client_options,
    print_json,
    wants_json,
)
from distcron.cli.render import fields, relative, shorten, shown_state, table, text
from distcron.scheduler.records import LaunchState

# Reasons are sentences: a table shows their start.
REASON_WIDTH = 48


@click.group("runs", invoke_without_command=True,
             short_help="Runs by slot, newest first; one with its output.")
@click.option("--job", help="Only this job's runs.")
@click.option("--state", type=click.Choice([s.value for s in LaunchState]),
              help="Only runs in this state.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True)
@client_options
@click.pass_context
def runs_command(ctx: click.Context, job: str | None, state: str | None, limit: int) -> None:
    """Runs by slot, newest first, with why (reason) and how many slots (count);
    `distcron runs show LAUNCH_ID` for one with its attempts and output."""
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
        (run["launch_id"], shown_state(run), shorten(run.get("reason") or "-", REASON_WIDTH),
         str(run.get("count", 1)), text(run["worker"]), text(run["exit_code"]),
         relative(run["started_at"], now), relative(run["ended_at"], now))
        for run in runs
    ]
    click.echo(table(("LAUNCH ID", "STATE", "REASON", "COUNT", "WORKER", "EXIT", "STARTED",
                      "ENDED"), rows))


@runs_command.command("show", short_help="One run's record, attempts and output.")
@click.argument("launch_id")
@click.option("--follow", is_flag=True,
              help="Print the output as the run writes it, until it ends; exit 0 if it "
              "succeeded, else 1 (needs the token).")
@client_options
@click.pass_context
def show_run(ctx: click.Context, launch_id: str, follow: bool) -> None:
    """One run's record and earlier attempts, and their output when the token is known
    (output may hold secrets)."""
    client = ApiClient.from_context(ctx)
    path = f"/runs/{quote(launch_id, safe='@:~')}"
    if follow and not client.has_token:
        raise ClientError("--follow reads the run's output: set DISTCRON_TOKEN")
    with_output = client.has_token and not follow
    run = client.call("GET", path, params={"output": "true"} if with_output else None)
    if wants_json(ctx) and not follow:
        print_json(run)
        return
    output = run.pop("output")
    attempts = run.pop("attempts", [])
    if not wants_json(ctx):
        click.echo(fields((key, text(value)) for key, value in run.items()
                          if value not in (None, "")))
        if attempts:
            click.echo(attempts_table(attempts))
    if follow:
        _follow(ctx, client, path)
    if not with_output:
        if not follow:
            click.echo("(output not shown: set DISTCRON_TOKEN to read it)")
        return
    for attempt in attempts:
        if attempt.get("output"):
            _print_output(f"--- output of attempt {attempt['attempt']} ---", attempt["output"])
    if output:
        _print_output("--- output ---", output)


def attempts_table(attempts: list[dict[str, Any]]) -> str:
    now = datetime.now(UTC)
    rows = [(str(a["attempt"]), a["state"], text(a.get("exit_code")),
             relative(a.get("started_at"), now), relative(a.get("ended_at"), now),
             text(a.get("worker")), shorten(a.get("reason") or "-", REASON_WIDTH))
            for a in attempts]
    return "earlier attempts:\n" + table(
        ("ATTEMPT", "STATE", "EXIT", "STARTED", "ENDED", "WORKER", "REASON"), rows)


def _print_output(title: str, output: str) -> None:
    click.echo(title)
    click.echo(output, nl=not output.endswith("\n"))


def _follow(ctx: click.Context, client: ApiClient, path: str) -> None:
    """Stream the output until the launch ends; exit with its outcome."""
    if not wants_json(ctx):
        click.echo("--- output (following) ---")
    out = sys.stdout.buffer
    for chunk in client.stream(f"{path}/output", params={"follow": "true"}):
        if not wants_json(ctx):
            out.write(chunk)
            out.flush()
    run = client.call("GET", path)
    if wants_json(ctx):
        print_json(run)
    else:
        click.echo(f"\n--- {run['state']} ---")
    if LaunchState(run["state"]).live:
        raise ClientError("the follow ended while the run is still live: follow it again")
    ctx.exit(0 if run["state"] == LaunchState.SUCCEEDED.value else 1)
