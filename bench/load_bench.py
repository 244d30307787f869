"""Loading many jobs: a 100,000-job file validated and stored, and a restart that
reads them back, as users meet it.

    .venv/bin/python bench/load_bench.py [--jobs 100000] [--idle 30] [--skip-serve]

The jobs are what a fleet writes: names of teams' jobs, ``H``-spread yearly,
monthly and weekly schedules, five time zones, a description, an owner, tags and
an environment on some. Reported, in one run:

(1) Phases, in this process: reading the TOML, validating the specs, comparing
    them with the store and encoding them, writing them to SQLite, and what a new
    leader does with them (decoding each spec and scheduling it), each timed alone.
(2) ``distcron serve --config FILE`` on a fresh SQLite store, until the leader
    has loaded every job (its ``event=term_started jobs=N`` line): start-up time,
    resident memory, and CPU used while idle for ``--idle`` seconds; then the
    same command line again on the same store (the restart users do).
(3) The peer, in the same run: APScheduler 3 given the same schedules as
    CronTriggers (``add_job`` for each, memory only, no store), its time and the
    memory it added.

Targets (issue 12): first start and restart <= 10 s, <= 500 MB, <= 1 % idle CPU.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from launch_bench import cpu_seconds, free_port, rss_mb, stop  # noqa: E402

T = TypeVar("T")
ZONES = ("UTC", "Europe/Amsterdam", "America/New_York", "Asia/Tokyo", "Australia/Sydney")
SCHEDULES = ("H H H H *", "H H H * *", "H H * * H")  # yearly, monthly, weekly
TERM_STARTED = re.compile(r"event=term_started .*jobs=(\d+)")


def fleet_toml(count: int) -> str:
    lines = []
    for n in range(count):
        team = f"team{n % 97:02d}"
        lines += ["[[job]]", f'name = "{team}-job-{n:06d}"',
                  f'schedule = "{SCHEDULES[n % 3]}"', f'timezone = "{ZONES[n % 5]}"',
                  f'command = "/usr/local/bin/{team}-task --shard {n % 16}"',
                  f'description = "nightly upkeep of shard {n % 16} for {team}"',
                  f'owner = "{team}@example.com"', f'tags = ["{team}", "batch"]']
        if n % 4 == 0:
            lines.append(f'env = {{ SHARD = "{n % 16}", TEAM = "{team}" }}')
        lines.append("")
    return "\n".join(lines)


def timed(what: str, func: Callable[[], T]) -> T:
    began = time.perf_counter()
    result = func()
    print(f"    {what:<44} {time.perf_counter() - began:6.2f} s")
    return result


def phases(text: str, count: int) -> None:
    import asyncio

    import tomli

    from distcron.bulk import collector_held
    from distcron.cron import compile as cron_compile
    from distcron.jobs import diff_jobs, parse_jobs_file, write_diff
    from distcron.replica import watched
    from distcron.scheduler.rounds import LeaderRounds
    from distcron.store.layout import Cursor
    from distcron.store.sqlite import SqliteStore

    print(f"(1) {count} jobs, phase by phase, in this process, as serve does each")
    now = datetime.now(UTC)
    with collector_held():
        document = timed("read the TOML (tomli)", lambda: tomli.loads(text))
        found = timed("validate the jobs", lambda: parse_jobs_file(
            text, "jobs.toml", (), now, None, document))
        diff = timed("compare with the store (empty) and encode",
                     lambda: diff_jobs(found.jobs, {}, source="/jobs.toml", prune=True, now=now))
    with tempfile.TemporaryDirectory(prefix="distcron-load-") as tmp:
        store = SqliteStore(Path(tmp) / "state.db")

        async def write() -> None:
            await write_diff(store, diff, now)
            await store.close()

        timed("write them to a new SQLite store", lambda: asyncio.run(write()))
    stored = [spec.to_json().encode() for spec in found.jobs]
    cron_compile._schedules.clear()  # a restarted leader has compiled nothing yet
    with collector_held():
        inputs = timed("a new leader decodes every stored spec", lambda: [
            watched.job_input(spec.name, raw, Cursor(now)) for spec, raw in zip(
                found.jobs, stored, strict=True)])
        rounds = LeaderRounds(1, "bench", "here")
        timed("a new leader schedules every job", lambda: rounds.load(inputs, now))


def serve_until_loaded(workdir: Path, config: Path, count: int, idle: float) -> str:
    log_path = workdir / f"serve-{time.monotonic_ns()}.log"
    args = [sys.executable, "-m", "distcron", "serve", "--data-dir", str(workdir / "data"),
            "--listen", f"127.0.0.1:{free_port()}", "--config", str(config)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISTCRON_")}
    began = time.monotonic()
    with log_path.open("w") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, text=True,
                                env=env, cwd=workdir)
    try:
        while True:
            match = TERM_STARTED.search(log_path.read_text())
            if match and int(match.group(1)) == count:
                break
            if proc.poll() is not None or time.monotonic() - began > 600:
                raise SystemExit(f"serve did not load {count} jobs:\n{log_path.read_text()}")
            time.sleep(0.05)
        startup = time.monotonic() - began
        before, t0 = cpu_seconds(proc.pid), time.monotonic()
        time.sleep(idle)  # what is measured is the idle itself
        used = cpu_seconds(proc.pid) - before
        elapsed = time.monotonic() - t0
        memory = rss_mb(proc.pid)
    finally:
        stop(proc)
    return (f"start-up {startup:5.1f} s ({startup / 10:.2f}x the 10 s target), resident "
            f"memory {memory:4.0f} MB, idle CPU {100 * used / elapsed:.2f} % over "
            f"{elapsed:.0f} s")


def apscheduler(count: int) -> str:
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.triggers.cron import CronTrigger

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    scheduler = BackgroundScheduler(timezone="UTC")
    scheduler.start(paused=True)
    began = time.perf_counter()
    for n in range(count):
        # APScheduler has no H: the spread distcron computes is given as numbers.
        minute, hour, day, month, weekday = n % 60, n % 24, n % 28 + 1, n % 12 + 1, n % 7
        fields: dict[str, Any] = {"minute": minute, "hour": hour}
        if n % 3 == 0:
            fields |= {"day": day, "month": month}
        elif n % 3 == 1:
            fields |= {"day": day}
        else:
            fields |= {"day_of_week": weekday}
        scheduler.add_job(print, CronTrigger(timezone=ZONES[n % 5], **fields),
                          id=f"job-{n}")
    took = time.perf_counter() - began
    added = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before
    scheduler.shutdown(wait=False)
    return f"add_job x{count}: {took:5.1f} s, memory added {added:4.0f} MB (no store)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--idle", type=float, default=30.0)
    parser.add_argument("--skip-serve", action="store_true")
    args = parser.parse_args()
    text = fleet_toml(args.jobs)
    print(f"a jobs file of {args.jobs} jobs, {len(text) / 1e6:.1f} MB")
    phases(text, args.jobs)
    if not args.skip_serve:
        with tempfile.TemporaryDirectory(prefix="distcron-load-") as tmp:
            workdir = Path(tmp)
            config = workdir / "jobs.toml"
            config.write_text(text)
            print("(2) distcron serve --config jobs.toml (SQLite)")
            print(f"    first start: {serve_until_loaded(workdir, config, args.jobs, args.idle)}")
            print(f"    restart:     {serve_until_loaded(workdir, config, args.jobs, args.idle)}")
    print(f"(3) APScheduler 3, same schedules: {apscheduler(args.jobs)}")
    print("    targets: first start and restart <= 10 s, memory <= 500 MB, idle CPU <= 1 %")


if __name__ == "__main__":
    main()
