"""``distcron serve``: run a scheduler replica and its HTTP API."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click

from distcron.cli.help import LOG_LEVELS, Layered
from distcron.clock import Clock
from distcron.errors import ConfigError, DistcronError
from distcron.replica.config import ConfigFile, ServeConfig, build_config, load_config_file
from distcron.store import Store

if TYPE_CHECKING:  # imported when serving, not for `--help`
    import uvicorn

    from distcron.executors.base import Executor
    from distcron.replica.runtime import Replica

log = logging.getLogger("distcron.serve")


@click.command("serve", short_help="Run a scheduler replica and its API.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path),
              help="TOML file: [serve] settings and the [[job]] tables to run.")
@click.option("--store", cls=Layered, env="DISTCRON_STORE",
              shown_default="sqlite under --data-dir",
              help="sqlite:///PATH or etcd://HOST:PORT[,HOST:PORT...][/PREFIX].")
@click.option("--listen", cls=Layered, env="DISTCRON_LISTEN", shown_default="127.0.0.1:8500",
              help="HOST:PORT for the HTTP API.")
@click.option("--id", "replica_id", cls=Layered, env="DISTCRON_ID", shown_default="HOST-PORT",
              help="This replica's name.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), cls=Layered,
              env="DISTCRON_DATA_DIR", shown_default="./distcron-data",
              help="Where local state and run output live.")
@click.option("--token-file", type=click.Path(dir_okay=False, path_type=Path), cls=Layered,
              env="DISTCRON_TOKEN_FILE",
              help="File holding the API token (DISTCRON_TOKEN may hold the token itself; "
              "without either, one is made in --data-dir).")
@click.option("--lease-ttl", type=float, cls=Layered, env="DISTCRON_LEASE_TTL",
              shown_default="3", help="Leader lease, in seconds.")
@click.option("--max-clock-skew", type=float, cls=Layered, env="DISTCRON_MAX_CLOCK_SKEW",
              shown_default="2",
              help="Seconds this replica's clock may be off from the median of the "
              "replicas' clocks before it stops leading (0: not compared).")
@click.option("--smtp", cls=Layered, env="DISTCRON_SMTP",
              help="HOST:PORT of the SMTP server mailto: notifiers are sent through (the "
              "sender is DISTCRON_SMTP_FROM).")
@click.option("--log-level", default="info", show_default=True, type=LOG_LEVELS)
def serve_command(config_file: Path | None, store: str | None, listen: str | None,
                  replica_id: str | None, data_dir: Path | None, token_file: Path | None,
                  lease_ttl: float | None, max_clock_skew: float | None, smtp: str | None,
                  log_level: str) -> None:
    """Run a scheduler replica: campaign for leadership, launch while leader,
    serve the HTTP API either way."""
    from distcron.logs import setup_logging

    setup_logging(log_level.upper())
    try:
        # Read and parsed once: the settings and the jobs come from one reading.
        config_read = load_config_file(config_file) if config_file else None
        config = build_config(config_read.settings if config_read else {}, os.environ, {
            "store": store, "listen": listen, "id": replica_id, "data_dir": data_dir,
            "token_file": token_file, "lease_ttl": lease_ttl,
            "max_clock_skew": max_clock_skew, "smtp": smtp})
    except ConfigError as exc:
        click.echo(f"distcron serve: {exc}", err=True)
        sys.exit(2)
    serving = _serve(config, config_read)
    del config_read  # _serve lets go of the file's text once it has applied it
    try:
        asyncio.run(serving)
    except DistcronError as exc:
        click.echo(f"distcron serve: {exc}", err=True)
        sys.exit(1)


class _Reloader:
    """SIGHUP: apply the jobs file again, one reload at a time, in the order the
    signals came; a file that cannot be read or is invalid changes nothing."""

    def __init__(self, store: Store, path: str | None, clock: Clock) -> None:
        self.store = store
        self.path = path
        self.clock = clock
        self._tasks: set[asyncio.Task[None]] = set()
        self._one_at_a_time = asyncio.Lock()

    def reload(self) -> None:
        if self.path is None:
            log.info("event=reload_ignored reason=%r", "no jobs file was given")
            return
        task = asyncio.create_task(self._reload(self.path), name="reload-jobs")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _reload(self, path: str) -> None:
        from distcron.replica.jobsync import apply_config_jobs

        async with self._one_at_a_time:
            try:
                text = await asyncio.to_thread(Path(path).read_text, encoding="utf-8")
                await apply_config_jobs(self.store, text, path, self.clock)
            except (OSError, UnicodeDecodeError, DistcronError) as exc:
                log.error("event=jobs_file_rejected file=%s error=%r", path, str(exc))


def _token(config: ServeConfig) -> str:
    """The token given, or this data directory's own (see cli/local_token.py)."""
    from distcron.cli.local_token import ensure_token, publish

    if config.token is not None:
        return config.token.get_secret_value()
    token = ensure_token(config.data_dir)
    path = publish(token, config.host, config.port)
    log.info("event=token_generated file=%s copy=%s", config.data_dir / "token", path)
    return token


async def _serve(config: ServeConfig, config_file: ConfigFile | None) -> None:
    from distcron.replica.jobsync import apply_config_jobs

    _private_data_dir(config)
    parts = _Parts.build(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    jobs_file = config_file if config_file is not None and config_file.has_jobs else None
    reloader = _Reloader(parts.store, str(jobs_file.path) if jobs_file else None, parts.clock)
    loop.add_signal_handler(signal.SIGHUP, reloader.reload)
    log.info("event=starting replica=%s listen=%s store=%s", parts.replica.replica_id,
             config.listen, config.store_url.split("@")[-1])
    try:
        if jobs_file is not None:
            await apply_config_jobs(parts.store, jobs_file.text, str(jobs_file.path),
                                    parts.clock, jobs_file.document)
        # The text (and parsed document) of a big jobs file is tens of MB; a
        # reload reads the file again.
        config_file = jobs_file = None
        await parts.run(stop)
    finally:
        await parts.close()


def _private_data_dir(config: ServeConfig) -> None:
    from distcron.store.sqlite_files import make_private_dir, warn_if_open

    # Run directories hold each launch's request, env included: 0700, as the store's.
    try:
        make_private_dir(config.data_dir)
    except OSError as exc:
        raise ConfigError(f"data directory {config.data_dir}: cannot create it: "
                          f"{exc.strerror or exc}") from exc
    if config.store is not None:  # else the store is in it and warns about it
        warn_if_open("data_dir", [config.data_dir])


@dataclass
class _Parts:
    """What one ``serve`` runs: the store, the executors, the replica, its API."""

    store: Store
    clock: Clock
    executors: dict[str, Executor]
    replica: Replica
    server: uvicorn.Server

    @classmethod
    def build(cls, config: ServeConfig) -> _Parts:
        import uvicorn
        from prometheus_client import CollectorRegistry

        from distcron.api.app import create_app
        from distcron.clock import SystemClock
        from distcron.executors.http import HttpExecutor
        from distcron.executors.local import LocalExecutor
        from distcron.metrics import Metrics
        from distcron.replica.runtime import Replica, ReplicaConfig, default_replica_id
        from distcron.store import open_store

        token = _token(config)
        store = open_store(config.store_url)
        clock = SystemClock()
        registry = CollectorRegistry()
        metrics = Metrics(registry)
        executors: dict[str, Executor] = {
            "local": LocalExecutor(config.data_dir.resolve() / "runs"), "http": HttpExecutor()}
        if config.slurm_output_dir is not None:
            from distcron.executors.slurm import SlurmExecutor

            executors["slurm"] = SlurmExecutor(
                config.slurm_output_dir.resolve(), cluster=config.slurm_cluster,
                env={} if config.slurm_conf is None else {"SLURM_CONF": str(config.slurm_conf)})
        replica = Replica(
            store, executors,
            ReplicaConfig(config.id or default_replica_id(config.listen), config.listen,
                          config.lease_ttl, config.history, config.stage_lead,
                          config.smtp_server, config.max_clock_skew),
            clock, metrics)
        metrics.identify(replica.replica_id)
        app = create_app(store, replica, token, registry)
        server = uvicorn.Server(uvicorn.Config(
            app, host=config.host, port=config.port, log_config=None, lifespan="off"))
        return cls(store, clock, executors, replica, server)

    async def run(self, stop: asyncio.Event) -> None:
        """Until ``stop`` is set or either the replica or the API ends; an error
        of either is raised once both have stopped."""
        replica_task = asyncio.create_task(self.replica.run(stop), name="replica")
        server_task = asyncio.create_task(self.server.serve(), name="api")
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait({replica_task, server_task, stopper},
                           return_when=asyncio.FIRST_COMPLETED)
        stop.set()
        self.server.should_exit = True
        await asyncio.gather(replica_task, server_task, return_exceptions=True)
        for task in (replica_task, server_task):
            if not task.cancelled() and (error := task.exception()) is not None:
                raise error

    async def close(self) -> None:
        for executor in self.executors.values():
            await executor.close()
        await self.store.close()
