"""``distcron worker``: run a worker agent that runs the launches assigned to it.

SIGTERM or SIGINT stops it: no more claims, the lease is revoked (its
registration vanishes at once), running jobs go on by themselves. Started again
with the same ``--id`` and ``--data-dir``, it adopts them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
from pathlib import Path

import click

from distcron.cli.help import LOG_LEVELS
from distcron.clock import SystemClock
from distcron.errors import ConfigError, DistcronError
from distcron.executors.local import LocalExecutor
from distcron.logs import setup_logging
from distcron.store import open_store
from distcron.worker.agent import WorkerAgent, WorkerConfig

log = logging.getLogger("distcron.worker")


def _tags(value: str) -> tuple[str, ...]:
    return tuple(tag.strip() for tag in value.split(",") if tag.strip())


@click.command("worker", short_help="Run a worker agent that runs launches.")
@click.option("--store", "store_url", required=True,
              help="sqlite:///PATH or etcd://HOST:PORT[,HOST:PORT...][/PREFIX].")
@click.option("--id", "worker_id", show_default="the host name", help="This worker's name. "
              "Keep it stable: a restarted worker finds its launches by it.")
@click.option("--slots", type=click.IntRange(min=1), show_default="the CPU count",
              help="How many launches may run at once.")
@click.option("--tags", default="", help="Comma-separated tags the leader may match "
              "jobs against, e.g. gpu,ssd.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("distcron-worker-data"), show_default=True,
              help="Where runs are kept; must persist across restarts.")
@click.option("--lease-ttl", type=click.FloatRange(min=0, min_open=True), default=3.0,
              show_default=True, help="Seconds the registration outlives a dead worker.")
@click.option("--load-file", type=click.Path(dir_okay=False, path_type=Path),
              show_default="the 1-minute load average per CPU",
              help="Report the number in this file as the worker's load (written by a "
              "script, say).")
@click.option("--log-level", default="info", show_default=True, type=LOG_LEVELS)
def worker_command(store_url: str, worker_id: str | None, slots: int | None, tags: str,
                   data_dir: Path, lease_ttl: float, load_file: Path | None,
                   log_level: str) -> None:
    """Run a worker agent: register, claim the launches assigned to this worker,
    run them and report their outcome."""
    setup_logging(log_level.upper())
    try:
        config = WorkerConfig(worker_id=worker_id or socket.gethostname(),
                              slots=slots or os.cpu_count() or 1, tags=_tags(tags),
                              lease_ttl=lease_ttl, load_file=load_file)
    except ConfigError as exc:
        click.echo(f"distcron worker: {exc}", err=True)
        sys.exit(2)
    data_dir = data_dir.resolve()
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        asyncio.run(_work(store_url, config, data_dir))
    except (DistcronError, OSError) as exc:
        click.echo(f"distcron worker: {exc}", err=True)
        sys.exit(1)


async def _work(store_url: str, config: WorkerConfig, data_dir: Path) -> None:
    store = open_store(store_url)
    executor = LocalExecutor(data_dir / "runs")
    executor.worker_name = config.worker_id
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    # The URL may carry credentials (etcd://user:pass@host): log only the rest.
    log.info("event=starting worker=%s store=%s data_dir=%s", config.worker_id,
             store_url.rsplit("@", 1)[-1], data_dir)
    try:
        await WorkerAgent(store, executor, config, SystemClock()).run(stop)
    finally:
        await executor.close()
        await store.close()
