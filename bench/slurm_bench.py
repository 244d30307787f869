"""Slurm launch benchmark: many ``executor = "slurm"`` jobs due in the same second.

    .venv/bin/python bench/slurm_bench.py [--jobs 500] [--lead 25] [--cpus 64]

A real one-node Slurm (tests/slurm_cluster.py: munged, slurmctld, slurmd on this
machine; the node claims ``--cpus`` CPUs so that Slurm may run that many jobs at
once) and one ``distcron serve`` on SQLite. ``--jobs`` jobs (command ``true``)
are all due at one slot. Reported, from the slot, per launch:

- intent: the committed launch intent (the replica's log line after the commit);
- submission: sbatch's answer (the ``slurm_job`` file the executor writes as soon
  as sbatch has given the job id: its modification time);
- running: the job's wrapper starting on the node (its ``started`` file).

Needs root (the test Slurm runs as root).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.launch_bench import (  # noqa: E402
    TERM_STARTED,
    intent_delays,
    next_slot,
    parse_utc,
    percentiles,
    start_serve,
    stop,
    wait_for,
)

from tests.slurm_cluster import SlurmCluster, slurm_missing  # noqa: E402


def jobs_toml(count: int, schedule: str, cluster: SlurmCluster, output_dir: Path) -> str:
    lines = ["[serve]", f"slurm_output_dir = {json.dumps(str(output_dir))}",
             f"slurm_conf = {json.dumps(str(cluster.conf))}", 'slurm_cluster = "bench"', ""]
    for n in range(count):
        lines += ["[[job]]", f'name = "job-{n:06d}"', f"schedule = {json.dumps(schedule)}",
                  'executor = "slurm"', 'command = "true"', ""]
    return "\n".join(lines)


def file_delays(output_dir: Path, name: str, slot: datetime) -> list[float]:
    """Seconds from the slot to the modification of each launch's ``name`` file."""
    delays = []
    for path in output_dir.glob(f"*@*/{name}"):
        if parse_utc(path.parent.name.rpartition("@")[2]) == slot:
            delays.append(path.stat().st_mtime - slot.timestamp())
    return delays


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--lead", type=float, default=25.0,
                        help="seconds from start to the slot (the replica must lead by then)")
    parser.add_argument("--cpus", type=int, default=64, help="CPUs the Slurm node claims")
    parser.add_argument("--keep", action="store_true", help="keep the directory (logs)")
    args = parser.parse_args()
    missing = slurm_missing()
    if missing is not None:
        raise SystemExit(f"cannot start Slurm: {missing}")
    workdir = Path(tempfile.mkdtemp(prefix="distcron-slurm-bench-"))
    try:
        cluster = SlurmCluster(workdir / "slurm", cpus=args.cpus, min_job_age=3600,
                               extra_conf=("SlurmdParameters=config_overrides",))
        cluster.start()
        output_dir = workdir / "runs"
        try:
            slot = next_slot(args.lead)
            schedule = f"{slot.second} {slot.minute} {slot.hour} * * *"
            config = workdir / "jobs.toml"
            config.write_text(jobs_toml(args.jobs, schedule, cluster, output_dir))
            proc, log_path, _url = start_serve(workdir, config)
            try:
                wait_for(lambda: bool(TERM_STARTED.search(log_path.read_text())),
                         args.lead - 1, "the replica to lead")
                if datetime.now().astimezone() >= slot:
                    raise SystemExit("the replica took longer to start than --lead allows")
                wait_for(lambda: len(file_delays(output_dir, "exit", slot)) >= args.jobs, 1200,
                         "every job to end")
                intents = list(intent_delays(log_path.read_text(), slot).values())
            finally:
                stop(proc)
            submitted = file_delays(output_dir, "slurm_job", slot)
            running = file_delays(output_dir, "started", slot)
            names = cluster.all_job_names()
        finally:
            cluster.stop()
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print(f"{args.jobs} Slurm launches due at once (node of {args.cpus} CPUs)")
    print(f"  slot -> intent      {percentiles(intents)}  (n={len(intents)})")
    print(f"  slot -> submission  {percentiles(submitted)}  (n={len(submitted)})")
    print(f"  slot -> running     {percentiles(running)}  (n={len(running)})")
    doubled = len(names) - len(set(names))
    print(f"  Slurm jobs: {len(names)}, names submitted twice: {doubled}")


if __name__ == "__main__":
    main()
