"""``distcron snapshot save|restore``: all of distcron's state in a file, and back.

``save`` reads a replica's API (``--server``, token as for the other commands)
or, with ``--store``, the store itself. ``restore`` writes into an empty store
(``--store``), of either backend: this is also how a one-machine install on
SQLite becomes a cluster on etcd.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import click

from distcron.cli.client import ApiClient, server_option
from distcron.errors import DistcronError
from distcron.store import open_store
from distcron.store.dump import Summary, restore, save


@click.group("snapshot", short_help="Save all state to a file, or restore it.")
def snapshot_command() -> None:
    """Save all distcron state in a file, or restore it into an empty store."""


@snapshot_command.command("save", short_help="Write all state, at one revision, to FILE.")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--store", "store_url", help="Read this store directly instead of a replica's "
              "API (sqlite:///PATH or etcd://HOST:PORT...).")
@server_option
@click.pass_context
def save_command(ctx: click.Context, file: Path, store_url: str | None) -> None:
    """Write every key of the store, at one revision, to FILE (it holds secrets: 0600)."""
    if store_url is None:
        text = ApiClient.from_context(ctx).call_text("GET", "/snapshot")
        _write_private(file, text)
        click.echo(f"saved to {file}")
        return

    async def run() -> Summary:
        store = open_store(store_url)
        try:
            with _open_private(file) as out:
                return await save(store, out, datetime.now(UTC))
        finally:
            await store.close()
    summary = _run(run)
    click.echo(f"saved {summary.keys} keys at revision {summary.revision} to {file}")


@snapshot_command.command("restore", short_help="Load FILE into an empty store.")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--store", "store_url", required=True,
              help="The empty store to restore into (sqlite:///PATH or etcd://...).")
def restore_command(file: Path, store_url: str) -> None:
    """Load FILE into an empty store; slots that fell due since the snapshot are
    recorded missed by its first leader, never run."""
    async def run() -> Summary:
        store = open_store(store_url)
        try:
            with file.open(encoding="utf-8") as lines:
                return await restore(store, lines, datetime.now(UTC))
        finally:
            await store.close()
    summary = _run(run)
    click.echo(f"restored {summary.keys} keys from revision {summary.revision} "
               f"(taken {summary.taken_at})")


def _run(work: Callable[[], Coroutine[Any, Any, Summary]]) -> Summary:
    try:
        return asyncio.run(work())
    except (DistcronError, OSError, UnicodeDecodeError) as exc:
        click.echo(f"distcron snapshot: {exc}", err=True)
        sys.exit(2)


def _open_private(file: Path) -> TextIO:
    """FILE for writing, readable by this user alone (a snapshot holds secrets)."""
    fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    return os.fdopen(fd, "w", encoding="utf-8")


def _write_private(file: Path, text: str) -> None:
    with _open_private(file) as out:
        out.write(text)
