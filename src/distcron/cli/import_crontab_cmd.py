"""``distcron import-crontab``: a classic crontab as a jobs file."""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

import click

from distcron.jobs import CrontabNote, convert_crontab, dump_jobs_toml
from distcron.jobs.spec import check_timezone

EXIT_NOTHING_IMPORTED = 1
EXIT_INVALID = 2


def _zone(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        return check_timezone(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _report(source: str, kind: str, note: CrontabNote) -> None:
    message = note.message.replace("\n", "\n    ")
    click.echo(f"{source}:{note.line}: {kind}: {message}", err=True)


@click.command("import-crontab", short_help="Turn a crontab into a jobs file.")
@click.argument("file", type=click.File("r", encoding="utf-8"))
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the jobs file here instead of to stdout.",
)
@click.option(
    "--tz",
    default="UTC",
    show_default=True,
    callback=_zone,
    help="Time zone the crontab's machine ran in; schedules before any CRON_TZ= use it.",
)
@click.option(
    "--system", is_flag=True, help="/etc/crontab format: a user column before the command."
)
@click.option("--skip-invalid", is_flag=True, help="Report invalid lines and convert the others.")
@click.pass_context
def import_crontab_command(
    ctx: click.Context, file: TextIO, output: Path | None, tz: str, system: bool, skip_invalid: bool
) -> None:
    """Turn the crontab FILE ("-" for stdin) into a TOML jobs file.

    Warnings (@reboot, ignored settings) go to stderr. Exit status: 0 when jobs
    were written, 1 when there was no job to import, 2 when a line is invalid
    (nothing is written unless --skip-invalid)."""
    source = file.name
    result = convert_crontab(file.read(), tz=tz, system=system)
    for note in result.warnings:
        _report(source, "warning", note)
    for note in result.errors:
        _report(source, "skipped" if skip_invalid else "error", note)
    if result.errors and not skip_invalid:
        click.echo(
            f"{source}: {len(result.errors)} invalid line(s), nothing written "
            "(--skip-invalid converts the other lines)",
            err=True,
        )
        ctx.exit(EXIT_INVALID)
    if not result.specs:
        click.echo(f"{source}: no job to import, nothing written", err=True)
        ctx.exit(EXIT_NOTHING_IMPORTED)
    header = (
        f"Jobs imported from {source} by `distcron import-crontab`.\n"
        f"Schedules without CRON_TZ= are in {tz}. cron let runs overlap and skipped slots\n"
        'missed while down; these jobs use distcron\'s defaults (concurrency = "forbid",\n'
        'catchup = "last"). See docs/jobs-file.md.'
    )
    text = dump_jobs_toml(result.specs, header=header)
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
