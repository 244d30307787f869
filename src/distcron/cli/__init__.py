"""The ``distcron`` command.

Each command lives in its own module and is imported only when it runs (or
when help is shown), so ``distcron next`` does not pay for the HTTP stack.
"""

from __future__ import annotations

import importlib

import click

# command name -> "module:attribute" of a click.Command
COMMANDS: dict[str, str] = {
    "next": "distcron.cli.next_cmd:next_command",
    "serve": "distcron.cli.serve_cmd:serve_command",
    "jobs": "distcron.cli.jobs_cmd:jobs_command",
    "runs": "distcron.cli.runs_cmd:runs_command",
    "status": "distcron.cli.status_cmd:status_command",
    "import-crontab": "distcron.cli.import_crontab_cmd:import_crontab_command",
    "snapshot": "distcron.cli.snapshot_cmd:snapshot_command",
    "worker": "distcron.cli.worker_cmd:worker_command",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, _, attribute = target.partition(":")
        command: click.Command = getattr(importlib.import_module(module_name), attribute)
        return command


@click.group(cls=LazyGroup, invoke_without_command=True)
@click.version_option(package_name="distcron")
@click.pass_context
def main(ctx: click.Context) -> None:
    """distcron: a distributed cron that keeps its promises when machines fail."""
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())
