"""Idle store traffic: how fast the store's revision grows when nothing happens.

    .venv/bin/python bench/idle_store_bench.py [--jobs 1000] [--replicas 2] [--minutes 1]
        [--store sqlite|etcd]

A real ``distcron serve`` (``--replicas`` of them, one leader and standbys on one
store: an SQLite file, or a real 3-member etcd on this machine) with ``--jobs``
jobs none of which falls due (yearly, ``H``-spread, five zones), and one launch
waiting for a worker that no worker can be (its tag matches none). Printed:
store revisions per minute while idle, with the revision at the start and the
end, so that every write left is a real event.

Target (issue 12): at most a handful per minute.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.launch_bench import start_serve, stop, wait_for

from tests.etcd_cluster import EtcdCluster

ZONES = ("UTC", "America/New_York", "Europe/Berlin", "Asia/Tokyo", "Australia/Sydney")
TOKEN = "bench-token"


def jobs_toml(count: int) -> str:
    lines = []
    for n in range(count):
        lines += ["[[job]]", f'name = "job-{n:05d}"', 'schedule = "H H H H *"',
                  f'timezone = "{ZONES[n % len(ZONES)]}"', 'command = "true"', ""]
    lines += ["[[job]]", 'name = "waits"', 'schedule = "H H H H *"', 'executor = "agent"',
              'tags = ["no-worker-has-this"]', 'command = "true"', ""]
    return "\n".join(lines)


def revision(url: str) -> int:
    answer = httpx.get(f"{url}/status", timeout=10,
                       headers={"Authorization": f"Bearer {TOKEN}"})
    answer.raise_for_status()
    return int(answer.json()["revision"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--minutes", type=float, default=1.0)
    parser.add_argument("--store", choices=("sqlite", "etcd"), default="sqlite")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="distcron-bench-") as tmp, \
            contextlib.ExitStack() as stack:
        workdir = Path(tmp)
        config = workdir / "jobs.toml"
        config.write_text(jobs_toml(args.jobs))
        store = f"sqlite:///{workdir / 'state.db'}"
        if args.store == "etcd":
            cluster = EtcdCluster(workdir / "etcd")
            cluster.start()
            stack.callback(cluster.stop)
            store = cluster.url("idle-bench")
        token_file = workdir / "token"
        token_file.write_text(TOKEN)
        procs = []
        try:
            for n in range(args.replicas):
                procs.append(start_serve(workdir, config, "--store", store, "--id", f"r{n}",
                                         "--token-file", str(token_file)))
            url = procs[0][2]

            def waiting() -> bool:
                try:
                    answer = httpx.post(f"{url}/jobs/waits/trigger", timeout=10,
                                        headers={"Authorization": f"Bearer {TOKEN}"})
                except httpx.HTTPError:  # not answering yet
                    return False
                return answer.status_code < 300
            wait_for(waiting, 120, "the jobs to load")
            time.sleep(5)  # the trigger and the start-up writes land
            first = revision(url)
            time.sleep(args.minutes * 60)
            last = revision(url)
        finally:
            for proc, _, _ in procs:
                stop(proc)
    per_minute = (last - first) / args.minutes
    print(f"{args.jobs} jobs none due, {args.replicas} replicas on {args.store}, one launch "
          f"waiting for a worker: revision {first} -> {last} in {args.minutes:g} min: "
          f"{per_minute:.1f} writes per minute (target: a handful)")


if __name__ == "__main__":
    main()
