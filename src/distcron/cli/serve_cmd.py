"""``distcron serve``: run a scheduler replica and its HTTP API."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

import click

from distcron.clock import Clock
from distcron.errors import ConfigError, DistcronError
from distcron.replica.config import ServeConfig, build_config, load_config_file
from distcron.store import Store

log = logging.getLogger("distcron.serve")


@click.command("serve")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path),
              help="TOML file: [serve] settings and the [[job]] tables to run.")
@click.option("--store", help="sqlite:///PATH (default: under --data-dir) or "
              "etcd://HOST:PORT[,HOST:PORT...][/PREFIX].")
@click.option("--listen", help="HOST:PORT for the HTTP API (default 127.0.0.1:8500).")
@click.option("--id", "replica_id", help="This replica's name (default: host-port).")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where local state and run output live (default ./distcron-data).")
@click.option("--token-file", type=click.Path(dir_okay=False, path_type=Path),
              help="File holding the API token (default: $DISTCRON_TOKEN).")
@click.option("--lease-ttl", type=float, help="Leader lease in seconds (default 3).")
@click.option("--smtp", help="HOST:PORT of the SMTP server mailto: notifiers are sent "
              "through (or $DISTCRON_SMTP; the sender is $DISTCRON_SMTP_FROM).")
@click.option("--log-level", default="INFO", show_default=True,
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False))
def serve_command(config_file: Path | None, store: str | None, listen: str | None,
                  replica_id: str | None, data_dir: Path | None, token_file: Path | None,
                  lease_ttl: float | None, smtp: str | None, log_level: str) -> None:
    """Run a scheduler replica: campaign for leadership, launch while leader,
    serve the HTTP API either way."""
    from distcron.logs import setup_logging

    setup_logging(log_level.upper())
    try:
        file_settings, jobs_document = (load_config_file(config_file) if config_file
                                        else ({}, {}))
        config = build_config(file_settings, os.environ, {
            "store": store, "listen": listen, "id": replica_id, "data_dir": data_dir,
            "token_file": token_file, "lease_ttl": lease_ttl, "smtp": smtp})
    except ConfigError as exc:
        click.echo(f"distcron serve: {exc}", err=True)
        sys.exit(2)
    jobs_text = config_file.read_text(encoding="utf-8") if config_file and jobs_document \
        else None
    try:
        asyncio.run(_serve(config, jobs_text, str(config_file)))
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


async def _serve(config: ServeConfig, jobs_text: str | None, jobs_source: str) -> None:
    import uvicorn
    from prometheus_client import CollectorRegistry

    from distcron.api.app import create_app
    from distcron.clock import SystemClock
    from distcron.executors.base import Executor
    from distcron.executors.http import HttpExecutor
    from distcron.executors.local import LocalExecutor
    from distcron.metrics import Metrics
    from distcron.replica.jobsync import apply_config_jobs
    from distcron.replica.runtime import Replica, ReplicaConfig, default_replica_id
    from distcron.store import open_store

    config.data_dir.mkdir(parents=True, exist_ok=True)
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
                      config.smtp_server),
        clock, metrics)
    metrics.identify(replica.replica_id)
    app = create_app(store, replica, token, registry)
    server = uvicorn.Server(uvicorn.Config(
        app, host=config.host, port=config.port, log_config=None, lifespan="off"))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    reloader = _Reloader(store, jobs_source if jobs_text is not None else None, clock)
    loop.add_signal_handler(signal.SIGHUP, reloader.reload)
    log.info("event=starting replica=%s listen=%s store=%s", replica.replica_id,
             config.listen, config.store_url.split("@")[-1])
    try:
        if jobs_text is not None:
            await apply_config_jobs(store, jobs_text, jobs_source, clock)
        replica_task = asyncio.create_task(replica.run(stop), name="replica")
        server_task = asyncio.create_task(server.serve(), name="api")
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait({replica_task, server_task, stopper},
                           return_when=asyncio.FIRST_COMPLETED)
        stop.set()
        server.should_exit = True
        await asyncio.gather(replica_task, server_task, return_exceptions=True)
        for task in (replica_task, server_task):
            if not task.cancelled() and (error := task.exception()) is not None:
                raise error
    finally:
        for executor in executors.values():
            await executor.close()
        await store.close()
