"""Agent herd: jobs due in the same second, run by worker agents, on a real 3-member etcd.

    .venv/bin/python bench/agent_bench.py [--jobs 2000] [--workers 2] [--lead 40]

A 3-member etcd on this machine (data on disk), one ``distcron serve`` on it, and
``--workers`` ``distcron worker`` processes with ``--jobs / --workers`` slots each;
``--jobs`` jobs (``executor = "agent"``, command ``true``) fall due in the same
second. Reported, from the slot: the committed intent (the leader's log), and
the process start (the run record's ``started_at``, as its worker reported it);
and what went wrong in the burst, from the logs: leaderships ended, workers'
leases lost, store calls that got no answer in time.

Beside it, the floor measured in the same run: as many bare ``posix_spawn``s of
the jobs' ``sh -c true``, one process per CPU, all at once.

Target (issue 12): p99 slot->process start <= 2 s, with no leadership lost.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.launch_bench import (
    DISTCRON,
    TERM_STARTED,
    intent_delays,
    jobs_toml,
    next_slot,
    p99,
    percentiles,
    runs_when_ended,
    spawn_floor,
    start_serve,
    stop,
    wait_for,
)

from tests.etcd_cluster import EtcdCluster


@contextlib.contextmanager
def workers(workdir: Path, url: str, count: int, slots: int
            ) -> Iterator[list[tuple[subprocess.Popen[str], Path]]]:
    started = []
    try:
        for n in range(count):
            log_path = workdir / f"worker-{n}.log"
            proc = subprocess.Popen(
                [*DISTCRON, "worker", "--store", url, "--id", f"w{n}", "--slots", str(slots),
                 "--data-dir", str(workdir / f"w{n}")],
                stdout=log_path.open("w"), stderr=subprocess.STDOUT, text=True, cwd=workdir)
            started.append((proc, log_path))
        yield started
    finally:
        for proc, _ in started:
            stop(proc)


def burst(workdir: Path, url: str, count: int, worker_count: int, lead: float) -> None:
    slot = next_slot(lead)
    config = workdir / "jobs.toml"
    config.write_text(jobs_toml(count, f"{slot.second} {slot.minute} {slot.hour} * * *",
                                command="true", executor="agent"))
    with workers(workdir, url, worker_count, -(-count // worker_count)) as agents:
        proc, log_path, api = start_serve(workdir, config, "--store", url)
        try:
            wait_for(lambda: bool(TERM_STARTED.search(log_path.read_text())), lead - 1,
                     "the replica to lead")

            def registered() -> bool:
                status = httpx.get(f"{api}/status", timeout=10).json()
                return len(status["workers"]) == worker_count
            wait_for(registered, max(1.0, (slot - datetime.now(UTC)).total_seconds() - 1),
                     "the workers to register")
            if datetime.now(UTC) >= slot:
                raise SystemExit("the replica took longer to start than --lead allows")
            records = runs_when_ended(api, count, 180)
            leader_log = log_path.read_text()
        finally:
            stop(proc)
        worker_logs = [path.read_text() for _, path in agents]
    intents = intent_delays(leader_log, slot)
    starts = [(datetime.fromisoformat(r["started_at"]) - slot).total_seconds()
              for r in records if r["started_at"]]
    print(f"{count} agent jobs due in the same second, {worker_count} workers, "
          f"a 3-member etcd on this machine ({os.cpu_count()} CPUs)")
    print(f"    slot->intent committed   {percentiles(list(intents.values()))}"
          + ("  (before the slot: staged)" if intents and max(intents.values()) < 0 else ""))
    print(f"    slot->process started    {percentiles(starts)}")
    # The peer: the same count of bare process starts on this machine, in this run.
    floor = spawn_floor(count, ("/bin/sh", "-c", "true"))
    print(f"    floor: {count} bare posix_spawns of sh -c true over {os.cpu_count()} processes "
          f"{percentiles(floor)}")
    print(f"    p99 process start, distcron / floor: {p99(starts) / p99(floor):.2f}x")
    print(f"    runs recorded: {len(records)}, started once each: "
          f"{len({r['launch_id'] for r in records}) == len(records) == count}")
    print(f"    leaderships ended in the burst: {leader_log.count('event=leadership_ended')}, "
          f"worker leases lost: {sum(text.count('event=lease_lost') for text in worker_logs)}, "
          f"store calls with no answer in time: "
          f"{sum(t.count('no answer in') for t in [leader_log, *worker_logs])}")
    print("    target: p99 slot->process started <= 2 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--lead", type=float, default=40.0,
                        help="seconds between start and the burst's slot")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="distcron-agent-bench-") as tmp:
        workdir = Path(tmp)
        cluster = EtcdCluster(workdir / "etcd")
        cluster.start()
        try:
            began = time.monotonic()
            burst(workdir, cluster.url("agent-bench"), args.jobs, args.workers, args.lead)
            print(f"    (whole run {time.monotonic() - began:.0f} s)")
        finally:
            cluster.stop()


if __name__ == "__main__":
    main()
