"""``distcron next``: show when an expression fires."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from distcron.cron import CronSyntaxError, NoSlotError, Schedule, parse

DEFAULT_COUNT = 5


@click.command("next", short_help="Print the next slots of a schedule.")
@click.argument("expr", nargs=-1, required=True)
@click.option("--tz", default="UTC", show_default=True, help="IANA time zone of the schedule.")
@click.option(
    "--after",
    metavar="ISO8601",
    show_default="now",
    help="Show slots strictly after this instant. Without a UTC offset "
    "it is read as wall time in --tz.",
)
@click.option(
    "--count",
    "-n",
    type=click.IntRange(1, 100_000),
    default=DEFAULT_COUNT,
    show_default=True,
    help="How many slots to show.",
)
@click.option("--job", metavar="NAME", help="Job name that seeds ? and H fields.")
@click.option(
    "--explain",
    is_flag=True,
    help="Print the schedule in words first, and a note on slots moved by DST.",
)
def next_command(
    expr: tuple[str, ...],
    tz: str,
    after: str | None,
    count: int,
    job: str | None,
    explain: bool,
) -> None:
    """Print the next slots of EXPR, one ISO-8601 datetime with UTC offset per line.

    EXPR is a cron expression (quote it, e.g. '0 9 * * 1-5'), a macro such as
    @daily, or @every DURATION. A bad expression exits with status 2.
    """
    text = " ".join(expr)
    try:
        schedule = parse(text, tz=tz, job=job)
    except CronSyntaxError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(2) from None
    start = _start(after, schedule)
    if explain:
        click.echo(schedule.describe())
    current = start
    for _ in range(count):
        try:
            current, note = schedule.next_with_note(current)
        except NoSlotError as exc:
            click.echo(f"error: no more slots: {exc}", err=True)
            raise SystemExit(1) from None
        line = current.isoformat()
        if explain and note:
            line += f"  ({note})"
        click.echo(line)


def _start(after: str | None, schedule: Schedule) -> datetime:
    if after is None:
        return datetime.now(UTC)
    try:
        value = datetime.fromisoformat(after)
    except ValueError:
        raise click.BadParameter(
            f"{after!r} is not an ISO-8601 datetime (e.g. 2026-03-29T01:30:00+01:00)",
            param_hint="--after",
        ) from None
    if value.tzinfo is None:
        # Wall time in the schedule's zone; an ambiguous one means its first occurrence.
        value = value.replace(tzinfo=schedule.zone)
    return value
