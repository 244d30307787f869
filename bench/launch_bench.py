"""Launch benchmark: many jobs due at once, and many jobs loaded while idle.

    .venv/bin/python bench/launch_bench.py [--jobs 2000] [--idle-jobs 100000] [--idle 60]

(a) ``--jobs`` jobs (command ``true``) all due in the same second. distcron runs
    as a real ``distcron serve`` process on SQLite; APScheduler 3.x runs the same
    jobs in this run, each starting the same command through the shell (as
    distcron and cron run a command), with the 64 threads the issue measured it
    with and with its default 10. Reported, from the slot: for distcron the
    committed launch intent (its log line, written after the commit) and the
    process start (the run record); for APScheduler the job function's start
    (its nearest "intent") and the process start. Beside them, the floor: the
    same number of bare ``posix_spawn``s, of ``/bin/true`` and of the jobs' own
    ``sh -c true``, from one process per CPU, started at one instant.
(b) ``--idle-jobs`` jobs loaded, none due for a long time: start-up time (until the
    leader has loaded them), resident memory, and CPU used while idle.

Targets (issue 12): (a) 2,000 jobs: p99 slot->process start <= 1 s and <= half
APScheduler's; 10,000 jobs (``--jobs 10000 --lead 40``): p99 <= 5 s;
(b) start-up <= 10 s, memory <= 500 MB, idle CPU <= 1 %.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
DISTCRON = [sys.executable, "-m", "distcron"]
# A replica's log: a launch intent committed (logged after the commit), and a
# leader that has loaded its jobs. Shared with failover_bench.
LAUNCH_RECORDED = re.compile(r"ts=(\S+) .*event=launch_recorded launch_id=(\S+) state=launching")
TERM_STARTED = re.compile(r"event=term_started .*jobs=(\d+)")


def parse_utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def intent_delays(log_text: str, slot: datetime) -> dict[str, float]:
    """Seconds from ``slot`` to the committed intent of each launch of that slot,
    by launch id, from a replica's log (its ``launch_recorded ... state=launching``
    lines, whose ``ts=`` is taken just after the commit, to the millisecond)."""
    delays = {}
    for match in LAUNCH_RECORDED.finditer(log_text):
        launch_id = match.group(2)
        if parse_utc(launch_id.rpartition("@")[2]) == slot:
            delays[launch_id] = (parse_utc(match.group(1)) - slot).total_seconds()
    return delays


def percentiles(values: list[float]) -> str:
    if not values:
        return "no data"
    values = sorted(values)
    p50 = statistics.median(values)
    p99 = values[min(len(values) - 1, int(len(values) * 0.99))]
    return f"p50={p50 * 1000:8.1f} ms  p99={p99 * 1000:8.1f} ms  max={values[-1] * 1000:8.1f} ms"


def p99(values: list[float]) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * 0.99))]


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def jobs_toml(count: int, schedule: str, **keys: str | int | float) -> str:
    """``count`` jobs ``job-000000``... on ``schedule``, each with ``keys`` (by
    default ``command = "true"``). JSON scalars are valid TOML values."""
    keys = keys or {"command": "true"}
    lines = []
    for n in range(count):
        lines += ["[[job]]", f'name = "job-{n:06d}"', f"schedule = {json.dumps(schedule)}"]
        lines += [f"{key} = {json.dumps(value)}" for key, value in keys.items()]
        lines.append("")
    return "\n".join(lines)


def start_serve(workdir: Path, config: Path | None,
                *extra: str) -> tuple[subprocess.Popen[str], Path, str]:
    log_path = workdir / f"serve-{time.monotonic_ns()}.log"
    port = free_port()
    args = [*DISTCRON, "serve", "--data-dir", str(workdir / "data"),
            "--listen", f"127.0.0.1:{port}", *extra]
    if config is not None:
        args += ["--config", str(config)]
    env = {k: v for k, v in os.environ.items() if k != "DISTCRON_TOKEN"}
    log = log_path.open("w")
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, text=True, env=env,
                            cwd=workdir)
    return proc, log_path, f"http://127.0.0.1:{port}"


def wait_for(predicate: object, timeout: float, what: str, every: float = 0.1) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(every)
    raise SystemExit(f"timed out waiting for {what}")


def stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# -- (a) a burst of jobs due in one second -----------------------------------------

JOB_COMMAND = "true"
# The pool the issue measured APScheduler with (64), and APScheduler's default (10).
APSCHEDULER_THREADS = (64, 10)


def next_slot(lead: float) -> datetime:
    return (datetime.now(UTC) + timedelta(seconds=lead)).replace(microsecond=0)


def tree_memory_mb(workdir: Path) -> float:
    """Resident memory of the replica and its helpers: every process working in
    ``workdir`` (the replica, its fork server, the batch supervisors) and their
    children (the jobs, held or running). The Python processes, forks that share
    pages, by their proportional share (``Pss``); the many shells, cheaply read
    during the burst, by their private pages (resident less shared, ``statm``),
    plus the most any of them shares, once."""
    roots = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if Path(os.readlink(entry / "cwd")).is_relative_to(workdir):
                    roots.append(int(entry.name))
            except OSError:
                continue
    seen: set[int] = set()
    kb = shared = 0
    page_kb = os.sysconf("SC_PAGE_SIZE") // 1024
    while roots:
        pid = roots.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            roots += map(int, Path(f"/proc/{pid}/task/{pid}/children").read_text().split())
            if Path(f"/proc/{pid}/comm").read_text().startswith("python"):
                rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
                if match := re.search(r"^Pss:\s+(\d+)", rollup, re.M):
                    kb += int(match.group(1))
                continue
            _, resident, shares = map(int, Path(f"/proc/{pid}/statm").read_text().split()[:3])
        except (OSError, ValueError):
            continue
        kb += (resident - shares) * page_kb
        shared = max(shared, shares * page_kb)
    return (kb + shared) / 1024


def sample_peak(workdir: Path, until: threading.Event, peak: list[float]) -> None:
    while not until.wait(1.0):
        peak.append(tree_memory_mb(workdir))


def runs_when_ended(url: str, count: int, timeout: float) -> list[dict[str, str]]:
    """The run records, once ``count`` of them have succeeded."""
    def runs() -> list[dict[str, str]]:
        answer = httpx.get(f"{url}/runs", params={"limit": min(count * 2, 10_000)}, timeout=30)
        return list(answer.json())

    # Once a second: each poll makes the replica read every run, and what is
    # measured must not compete with the measurement.
    wait_for(lambda: sum(r["state"] == "succeeded" for r in runs()) >= count, timeout,
             "every run to end", every=1.0)
    return runs()


def distcron_burst(count: int, lead: float) -> tuple[list[float], list[float], float]:
    with tempfile.TemporaryDirectory(prefix="distcron-bench-") as tmp:
        workdir = Path(tmp)
        slot = next_slot(lead)
        schedule = f"{slot.second} {slot.minute} {slot.hour} * * *"
        config = workdir / "jobs.toml"
        config.write_text(jobs_toml(count, schedule, command=JOB_COMMAND))
        proc, log_path, url = start_serve(workdir, config)
        try:
            def loaded() -> bool:
                return bool(TERM_STARTED.search(log_path.read_text()))
            wait_for(loaded, lead - 1, "the replica to lead")
            if datetime.now(UTC) >= slot:
                raise SystemExit("the replica took longer to start than --lead allows")
            done, peak = threading.Event(), [0.0]
            sampler = threading.Thread(target=sample_peak, args=(workdir, done, peak))
            sampler.start()
            records = runs_when_ended(url, count, 120)
            done.set()
            sampler.join()
            intents = intent_delays(log_path.read_text(), slot)
            starts = [(datetime.fromisoformat(r["started_at"]) - slot).total_seconds()
                      for r in records]
        finally:
            stop(proc)
    return list(intents.values()), starts, max(peak)


def apscheduler_burst(count: int, lead: float, threads: int
                      ) -> tuple[list[float], list[float]]:
    """APScheduler 3 with ``threads`` worker threads, each job running the same
    command as distcron's through the shell, as a crontab line is run."""
    from apscheduler.executors.pool import ThreadPoolExecutor
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.triggers.cron import CronTrigger

    slot = next_slot(lead)
    dispatched: list[float] = []
    started: list[float] = []
    done = threading.Semaphore(0)
    lock = threading.Lock()

    def run() -> None:
        entered = time.time() - slot.timestamp()
        proc = subprocess.Popen(JOB_COMMAND, shell=True)
        spawned = time.time() - slot.timestamp()
        proc.wait()
        with lock:
            dispatched.append(entered)
            started.append(spawned)
        done.release()

    scheduler = BackgroundScheduler(timezone="UTC",
                                    executors={"default": ThreadPoolExecutor(threads)})
    trigger = CronTrigger(second=slot.second, minute=slot.minute, hour=slot.hour,
                          timezone="UTC")
    for n in range(count):
        scheduler.add_job(run, trigger, id=f"job-{n}", misfire_grace_time=None)
    scheduler.start()
    for _ in range(count):
        if not done.acquire(timeout=120):
            break
    scheduler.shutdown(wait=False)
    return dispatched, started


def spawn_floor(count: int, argv: tuple[str, ...]) -> list[float]:
    """The physical floor: ``count`` bare ``posix_spawn``s of ``argv`` started at
    one instant, shared by one forked process per CPU (what the machine can do
    with nothing else to do); seconds from that instant to each spawn's return."""
    workers = os.cpu_count() or 1
    begin = time.time() + 0.5  # every forked process is ready by then
    readers = []
    for n in range(workers):
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read_fd)
            mine = range(n, count, workers)
            time.sleep(max(0.0, begin - time.time()))
            pids, times = [], []
            for _ in mine:
                pids.append(os.posix_spawn(argv[0], argv, {}))
                times.append(time.time() - begin)
            for child in pids:
                os.waitpid(child, 0)
            os.write(write_fd, json.dumps(times).encode())
            os._exit(0)
        os.close(write_fd)
        readers.append((pid, read_fd))
    delays: list[float] = []
    for pid, read_fd in readers:
        with os.fdopen(read_fd, "rb") as pipe:
            delays += json.loads(pipe.read())
        os.waitpid(pid, 0)
    return delays


# -- (b) many jobs, idle -----------------------------------------------------------


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def idle(count: int, seconds: float) -> None:
    with tempfile.TemporaryDirectory(prefix="distcron-bench-") as tmp:
        workdir = Path(tmp)
        # Yearly, spread by name over the year: nothing falls due while measured.
        config = workdir / "jobs.toml"
        config.write_text(jobs_toml(count, "H H H H *"))
        first = measure_idle(workdir, config, count, seconds)
        print(f"(b) {count} jobs, first start (validates and stores the jobs file): {first}")
        again = measure_idle(workdir, None, count, seconds)
        print(f"(b) {count} jobs, restart (jobs already in the store):           {again}")
    print("    targets: start-up <= 10 s, memory <= 500 MB, idle CPU <= 1 %")


def measure_idle(workdir: Path, config: Path | None, count: int, seconds: float) -> str:
    """Start a replica, wait until it leads with ``count`` jobs, watch it idle."""
    began = time.monotonic()
    proc, log_path, _ = start_serve(workdir, config)
    try:
        def loaded() -> bool:
            match = TERM_STARTED.search(log_path.read_text())
            return bool(match and int(match.group(1)) == count)
        wait_for(loaded, 600, f"{count} jobs to load")
        startup = time.monotonic() - began
        before, t0 = cpu_seconds(proc.pid), time.monotonic()
        time.sleep(seconds)
        used = cpu_seconds(proc.pid) - before
        elapsed = time.monotonic() - t0
        memory = rss_mb(proc.pid)
    finally:
        stop(proc)
    return (f"start-up {startup:5.1f} s, resident memory {memory:4.0f} MB, "
            f"idle CPU {100 * used / elapsed:.2f} % over {elapsed:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--lead", type=float, default=25.0,
                        help="seconds between start and the burst's slot")
    parser.add_argument("--idle-jobs", type=int, default=100_000)
    parser.add_argument("--idle", type=float, default=60.0)
    parser.add_argument("--skip-idle", action="store_true")
    parser.add_argument("--skip-burst", action="store_true")
    args = parser.parse_args()
    if not args.skip_burst:
        burst(args.jobs, args.lead)
    if not args.skip_idle:
        idle(args.idle_jobs, args.idle)


def burst(jobs: int, lead: float) -> None:
    intents, starts, memory = distcron_burst(jobs, lead)
    peers = {threads: apscheduler_burst(jobs, min(lead, 5.0), threads)
             for threads in APSCHEDULER_THREADS}
    floor = spawn_floor(jobs, ("/bin/true",))
    floor_sh = spawn_floor(jobs, ("/bin/sh", "-c", JOB_COMMAND))
    cpus = os.cpu_count()
    print(f"(a) {jobs} jobs due in the same second, each running {JOB_COMMAND!r} "
          "through the shell")
    print(f"    floor: {jobs} bare posix_spawns of /bin/true over {cpus} processes "
          f"{percentiles(floor)}")
    print(f"    floor: {jobs} bare posix_spawns of sh -c {JOB_COMMAND} over {cpus} processes "
          f"{percentiles(floor_sh)}")
    print(f"    distcron     slot->intent committed  {percentiles(intents)}")
    print(f"    distcron     slot->process started   {percentiles(starts)}")
    print(f"    distcron     resident memory of the replica and its helpers and jobs, "
          f"at the peak (sampled each second): {memory:.0f} MB")
    for threads, (dispatched, started) in peers.items():
        peer = f"APScheduler, {threads:2d} threads"
        print(f"    {peer}: slot->job dispatched  {percentiles(dispatched)}")
        print(f"    {peer}: slot->process started {percentiles(started)}")
    if not starts:
        return
    for threads, (_, started) in peers.items():
        print(f"    p99 process start, distcron / APScheduler ({threads} threads): "
              f"{p99(starts) / p99(started):.2f}x")
    print(f"    p99 process start, distcron / floor: {p99(starts) / p99(floor):.2f}x "
          f"(/bin/true), {p99(starts) / p99(floor_sh):.2f}x (sh -c {JOB_COMMAND})")
    print("    targets: 2,000 jobs p99 <= 1 s and <= 0.50x APScheduler's; "
          "10,000 jobs p99 <= 5 s")


if __name__ == "__main__":
    main()
