"""``distcron status``: the leader, its fence, the replicas and the workers."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from distcron.cli.client import ApiClient, client_options, print_json, wants_json
from distcron.cli.render import fields, relative, table, text


@click.command("status")
@client_options
@click.pass_context
def status_command(ctx: click.Context) -> None:
    """Who leads, and which replicas and workers are alive."""
    status = ApiClient.from_context(ctx).call("GET", "/status")
    if wants_json(ctx):
        print_json(status)
        return
    now = datetime.now(UTC)
    leader = text(status["leader"]) if status["leader"] else "none"
    if status.get("leader_note"):
        leader += f" ({status['leader_note']})"
    click.echo(fields([
        ("leader", leader),
        ("fence", text(status["fence"])),
        ("revision", text(status["revision"])),
        ("answered by", status["replica"]),
    ]))
    click.echo()
    click.echo(table(
        ("REPLICA", "LISTEN", "LEADER", "HEALTHY", "LAG", "CLOCK", "STARTED", "VERSION"),
        [(r["id"], r["listen"], text(r["is_leader"]), text(r["healthy"]), text(r.get("lag")),
          _skew(r.get("clock_skew")), relative(r["started_at"], now), text(r["version"]))
         for r in status["replicas"]],
    ))
    for r in status["replicas"]:
        if r.get("clock_problem"):
            click.echo(f"warning: {r['id']}: {r['clock_problem']}")
    click.echo()
    if status["workers"]:
        click.echo(table(
            ("WORKER", "SLOTS", "RUNNING", "LOAD"),
            [(w["id"], text(w["slots"]), text(w["running"]), f"{w['load']:.2f}")
             for w in status["workers"]],
        ))
    else:
        click.echo("workers: none registered")


def _skew(seconds: float | None) -> str:
    """A clock's lead on the replicas' median, as ``+0.003s``."""
    return "-" if seconds is None else f"{seconds:+.3f}s"
