"""Failover and launch-intent throughput, through real ``distcron serve`` leaders.

    .venv/bin/python bench/failover_bench.py [--store sqlite|etcd] [--kills 20] [--ttl 3]
        [--intent-jobs 5000] [--executor local|http] [--lead 20]
        [--skip-failover] [--skip-throughput] [--tmpfs] [--keep]

Phase 1, failover (``--skip-failover`` leaves it out). Three ``distcron serve``
replicas share one store (an SQLite file, or a real 3-member etcd cluster on
127.0.0.1; ``--store``). A job due every second appends its launch id and the
time it ran to a ledger outside distcron. The leader is SIGKILLed ``--kills``
times (and restarted, so three replicas stay up); after each kill the gap
between the last launch before it and the first launch after it is measured.
Reported: the gaps (p50/p99/max), launches that happened twice (must be 0), and
slots never launched beyond those that fell inside a gap and were caught up.

Phase 2, launch-intent throughput (``--skip-throughput`` leaves it out); always
on a real 3-member etcd cluster, whatever ``--store`` says. ``--intent-jobs`` N
jobs, all due in the same second (a daily 6-field expression for one second
``--lead`` seconds ahead), are loaded by one ``distcron serve`` on ``--store
etcd://...``, which leads. At the slot it must commit N launch intents (guarded
by its fence, batched by the leader into transactions) before it starts
anything. Reported, from the slot: intents/s = N / (slot -> last intent
committed), and p50/p99/max slot -> intent committed, taken from the replica's
``event=launch_recorded ... state=launching`` log lines (``ts=``, to the ms).
The leader logs a plan's intents only once all its transactions have
committed, so those lines say when the whole burst was committed (p50 is close
to max). A watch on ``launches/`` in this process also sees each commit
(its revision and when it arrived: a few ms late on etcd, up to the 50 ms poll
on SQLite), which shows when each intent really committed and how the leader
batched them: how many transactions, how many intents each, how far apart.
The CPU used from the slot to the last intent by the replica and by the etcd
members tells whether the leader or the store is the limit. The same run
prints the peer figures: the same N through a replica on SQLite (``--store
sqlite:////...``), and the raw etcd store on the same cluster
(``bench/store_bench.py``'s ``batched_creates``: guarded creates, 100 per
transaction as in ``bench/etcd_bench.py``, and as many per transaction as the
leader put in its commits), with the ratios through-leader / raw. The jobs
come in a jobs file (``--config``), which the replica applies to the store
before it campaigns.

How the burst's jobs launch (``--executor``). The intents of one slot are all
committed before the first of them is started, so the launches do not slow
the measurement itself; but they load the machine's two cores right after it,
and they give an independent duplicate check: every launch of the slot must
arrive exactly once.

- ``local`` (the default): the command appends ``$DISTCRON_LAUNCH_ID`` to a
  ledger file. A launch costs a fork of the fork server and a shell (a few ms
  of CPU); the replica starts 32 at a time.
- ``http``: the jobs POST to a tiny HTTP server this bench runs on a loopback
  port, which counts requests by ``Idempotency-Key`` (the launch id): the
  cheapest launch (the executor sends 64 at a time).

Targets (issue 4): gap p99 <= lease TTL + 2 s; zero double launches;
>= 1,000 launch intents/s through a leader on 3-member etcd with batching.
Machines are noisy: compare the ratios as well as the absolute figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import aclosing
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.etcd_bench import BATCH as RAW_BATCH  # noqa: E402
from bench.launch_bench import (  # noqa: E402
    TERM_STARTED,
    cpu_seconds,
    intent_delays,
    jobs_toml,
    next_slot,
)
from bench.launch_bench import percentiles as ms_percentiles  # noqa: E402
from bench.store_bench import batched_creates, ms  # noqa: E402

from distcron.store import open_store  # noqa: E402
from distcron.store.layout import LAUNCHES  # noqa: E402
from tests.etcd_cluster import EtcdCluster  # noqa: E402
from tests.serve_harness import Replica, read_ledger  # noqa: E402
from tests.waiting import wait_until  # noqa: E402

TARGET_INTENTS_PER_S = 1000


@contextlib.contextmanager
def etcd_cluster(workdir: Path) -> Iterator[EtcdCluster]:
    cluster = EtcdCluster(workdir / "etcd")
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


def percentiles(values: list[float]) -> str:
    values = sorted(values)
    p99 = values[min(len(values) - 1, int(len(values) * 0.99))]
    return (f"p50={statistics.median(values):.2f} s  p99={p99:.2f} s  "
            f"max={values[-1]:.2f} s")


# -- phase 1: failover ---------------------------------------------------------------


def failover(workdir: Path, url: str | None, kind: str, kills: int, ttl: float) -> None:
    """``url`` None: the replicas share --data-dir, hence the SQLite file."""
    workdir.mkdir(parents=True, exist_ok=True)
    ledger = workdir / "ledger"
    config = workdir / "jobs.toml"
    config.write_text("\n".join([
        "[[job]]", 'name = "tick"', 'schedule = "* * * * * *"', 'concurrency = "allow"',
        f"command = 'echo \"$DISTCRON_LAUNCH_ID $(date +%s.%N)\" >> {ledger}'"]))
    extra = ("--store", url) if url else ()
    members = [Replica(workdir, f"r{n}", data_dir=workdir / "data", config=config,
                       lease_ttl=ttl, extra=extra).start() for n in range(3)]
    gaps: list[float] = []
    try:
        for kill in range(kills):
            leader = wait_until(lambda: next((m for m in members if m.is_leader()), None),
                                30, "a leader")
            wait_until(lambda k=kill: len(read_ledger(ledger)) >= 3 * (k + 1), 30,
                       "launches under the current leader")
            before = len(read_ledger(ledger))
            killed_at = time.time()
            leader.kill()
            wait_until(lambda b=before: len(read_ledger(ledger)) > b + 1, 60,
                       "launches after the kill")
            times = sorted(float(line.split()[1]) for line in read_ledger(ledger))
            last_before = max(t for t in times if t <= killed_at)
            first_after = min(t for t in times if t > killed_at)
            gaps.append(first_after - last_before)
            index = members.index(leader)
            members[index] = Replica(workdir, f"r{index}-{kill}", data_dir=workdir / "data",
                                     config=config, lease_ttl=ttl, extra=extra).start()
            print(f"kill {kill + 1:2d}: gap {gaps[-1]:.2f} s", flush=True)
    finally:
        for member in members:
            member.stop()
    ids = [line.split()[0] for line in read_ledger(ledger)]
    doubled = [i for i, n in Counter(ids).items() if n > 1]
    print(f"store={kind} ttl={ttl}s kills={kills}")
    print(f"gap between the last launch before a kill and the first after: "
          f"{percentiles(gaps)}  (target p99 <= {ttl + 2:.1f} s)")
    slots = sorted({datetime.fromisoformat(i.split("@")[1].replace("Z", "+00:00"))
                    for i in ids})
    expected = int((slots[-1] - slots[0]).total_seconds()) + 1
    print(f"launches: {len(ids)}, launched twice: {len(doubled)} (must be 0), "
          f"slots never launched: {expected - len(slots)} of {expected}")


# -- phase 2: launch-intent throughput ---------------------------------------------------


class Sink:
    """``--executor http``: a loopback HTTP server that answers 200 at once and
    counts the requests by ``Idempotency-Key`` (the launch id)."""

    def __init__(self) -> None:
        self.keys: Counter[str] = Counter()
        lock = threading.Lock()
        keys = self.keys

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: one request is one launch

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with lock:
                    keys[self.headers.get("Idempotency-Key", "")] += 1
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 1024  # socketserver's 5 drops a burst's connections

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/launch"
        self.job: dict[str, str | int] = {"executor": "http", "url": self.url, "timeout": 60}
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Sink:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def received(self, suffix: str) -> Counter[str]:
        return Counter({k: n for k, n in list(self.keys.items()) if k.endswith(suffix)})


class Ledger:
    """``--executor local``: each launch appends ``$DISTCRON_LAUNCH_ID`` to a file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.job: dict[str, str | int] = {"command": f'echo "$DISTCRON_LAUNCH_ID" >> {path}'}

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def received(self, suffix: str) -> Counter[str]:
        return Counter(line for line in read_ledger(self.path) if line.endswith(suffix))


class CommitWatch:
    """A watch on ``launches/`` in a thread of this process: the revision in
    which each launch record was created and when the watch saw it (commit time
    plus delivery: a few ms on etcd, up to the poll interval on SQLite)."""

    def __init__(self, url: str, count: int) -> None:
        self.url = url
        self.count = count
        self.created: list[tuple[float, int]] = []  # (seen at, create revision)
        self.ready = threading.Event()
        self.done = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    def __enter__(self) -> CommitWatch:
        self._thread.start()
        if not self.ready.wait(30):
            raise SystemExit("the commit watch did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._task is not None and not self.done.is_set():
            self._loop.call_soon_threadsafe(self._task.cancel)
        self._thread.join(10)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        store = open_store(self.url)
        try:
            start = await store.revision() + 1
            async with aclosing(store.watch(LAUNCHES, start)) as watch:
                self.ready.set()
                async for batch in watch:
                    seen = time.time()
                    self.created += [(seen, e.kv.create_revision) for e in batch.events
                                     if e.type == "put" and e.kv.version == 1]
                    if len(self.created) >= self.count:
                        break
        except asyncio.CancelledError:
            pass
        finally:
            self.done.set()
            await store.close()

    def delays(self, slot: datetime) -> list[float]:
        """Seconds from ``slot`` to each intent's commit, as the watch saw it."""
        return [seen - slot.timestamp() for seen, _ in self.created]

    def commits(self) -> list[tuple[float, int]]:
        """(seen at, intents created) per revision that created any, in order."""
        by_revision: dict[int, list[float]] = {}
        for seen, revision in self.created:
            by_revision.setdefault(revision, []).append(seen)
        return [(min(times), len(times)) for _, times in sorted(by_revision.items())]


class CpuSampler:
    """CPU seconds used by groups of processes, sampled every 20 ms in a thread."""

    def __init__(self, groups: dict[str, list[int]]) -> None:
        self.groups = groups
        self.samples: list[tuple[float, dict[str, float]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            used = {name: sum(cpu_seconds(pid) for pid in pids)
                    for name, pids in self.groups.items()}
            self.samples.append((time.time(), used))
            self._stop.wait(0.02)

    def __enter__(self) -> CpuSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def used(self, begin: float, end: float) -> dict[str, float]:
        """CPU seconds of each group between the samples nearest ``begin`` and ``end``."""
        first = min(self.samples, key=lambda s: abs(s[0] - begin))
        last = min(self.samples, key=lambda s: abs(s[0] - end))
        return {name: last[1][name] - first[1][name] for name in self.groups}


def settle(idle: float = 0.8, timeout: float = 30.0) -> None:
    """Wait until the machine's CPUs are ``idle`` idle over half a second (the
    runs of a burst, or etcd's own work, can outlast it), for at most ``timeout``."""
    def busy_idle() -> tuple[int, int]:
        fields = [int(f) for f in Path("/proc/stat").read_text().split()[1:9]]
        return sum(fields), fields[3] + fields[4]  # idle + iowait

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        total0, idle0 = busy_idle()
        time.sleep(0.5)
        total1, idle1 = busy_idle()
        if (idle1 - idle0) >= idle * max(1, total1 - total0):
            return


@dataclass
class Burst:
    """What one replica did with ``count`` jobs due at ``slot``."""

    count: int
    slot: datetime
    delays: dict[str, float]  # launch id -> slot to intent committed (log), s
    seen: list[float]  # slot to intent committed, seen by the watch, s
    commits: list[tuple[float, int]]  # per txn: seen by the watch at, intents
    received: Counter[str]  # launch id -> times it reached the sink or ledger
    cpu: dict[str, float]  # CPU seconds between the slot and the last intent

    @property
    def last(self) -> float:
        return max(self.delays.values())

    @property
    def rate(self) -> float:
        return len(self.delays) / self.last

    def report(self, label: str) -> None:
        print(f"  {label}: {self.rate:8.0f} intents/s  ({len(self.delays)} of {self.count} "
              f"intents, slot -> last committed {self.last:.2f} s)")
        print(f"    slot -> intent committed (log): {ms_percentiles(list(self.delays.values()))}")
        if self.commits:
            slot = self.slot.timestamp()
            sizes = [n for _, n in self.commits]
            first, last = self.commits[0][0] - slot, self.commits[-1][0] - slot
            spacing = (last - first) / max(1, len(self.commits) - 1)
            print(f"    slot -> intent committed (watch): {ms_percentiles(self.seen)}")
            print(f"    commits seen by the watch: {len(self.commits)} txns, intents per txn "
                  f"median {statistics.median(sizes):.0f} (min {min(sizes)}, max {max(sizes)}); "
                  f"first {first:.2f} s after the slot, last {last:.2f} s, "
                  f"{ms(spacing)} apart")
        print("    CPU from the slot to the last intent: " + ", ".join(
            f"{name} {used:.2f} s ({100 * used / self.last:.0f}% of a core)"
            for name, used in self.cpu.items()))
        once = sum(n == 1 for n in self.received.values())
        print(f"    launches received: {sum(self.received.values())} for "
              f"{len(self.received)} launch ids; exactly once: {once} of {self.count}"
              f"{'' if once == self.count == len(self.received) else '  <-- NOT ALL ONCE'}")

    def intents_per_txn(self) -> int:
        sizes = [n for _, n in self.commits]
        return int(statistics.median(sizes)) if sizes else RAW_BATCH


def burst(workdir: Path, url: str, count: int, lead: float, ttl: float, executor: str,
          servers: list[int]) -> Burst:
    """``count`` jobs due ``lead`` seconds from now, through one replica on ``url``;
    ``servers``: the store's own processes, whose CPU is reported too."""
    workdir.mkdir(parents=True, exist_ok=True)
    settle()
    slot = next_slot(lead)
    schedule = f"{slot.second} {slot.minute} {slot.hour} * * *"
    suffix = "@" + slot.strftime("%Y-%m-%dT%H:%M:%SZ")
    with Sink() if executor == "http" else Ledger(workdir / "ledger") as target:
        config = workdir / "jobs.toml"
        config.write_text(jobs_toml(count, schedule, **target.job))
        replica = Replica(workdir, "intents", data_dir=workdir / "data", config=config,
                          lease_ttl=ttl, extra=("--store", url)).start()
        assert replica.proc is not None
        groups = {"replica": [replica.proc.pid]} | ({"etcd": servers} if servers else {})
        try:
            def loaded() -> bool:
                match = TERM_STARTED.search(replica.log())
                return bool(match and int(match.group(1)) == count)
            wait_until(loaded, max(1.0, slot.timestamp() - time.time()), f"{count} jobs to load")
            if time.time() > slot.timestamp() - 0.5:
                raise SystemExit(f"the replica loaded the jobs too close to the slot: "
                                 f"raise --lead (now {lead:g} s)")
            with CommitWatch(url, count) as watch, CpuSampler(groups) as cpu:
                wait_until(lambda: len(intent_delays(replica.log(), slot)) >= count,
                           slot.timestamp() - time.time() + 120, "every intent")
                watch.done.wait(10)
            delays = intent_delays(replica.log(), slot)
            wait_until(lambda: sum(target.received(suffix).values()) >= count,
                       60 + count / 20, "every launch to reach the sink or ledger")
            time.sleep(1)  # a launch started twice would arrive about now
            used = cpu.used(slot.timestamp(), slot.timestamp() + max(delays.values()))
            return Burst(count, slot, delays, watch.delays(slot), watch.commits(),
                         target.received(suffix), used)
        finally:
            replica.stop()


async def raw_rate(url: str, count: int, batch: int) -> float:
    """Guarded creates per second straight into the store, ``batch`` per txn."""
    store = open_store(url)
    try:
        keys = count // batch * batch
        return keys / await batched_creates(store, keys, batch)
    finally:
        await store.close()


def throughput(workdir: Path, cluster: EtcdCluster, count: int, lead: float,
               ttl: float, executor: str) -> None:
    print(f"launch-intent throughput: {count} jobs due in one second, executor {executor}; "
          f"etcd: 3 members, data in {cluster.base_dir}", flush=True)
    members = [m.process.pid for m in cluster.members if m.process is not None]
    on_etcd = burst(workdir / "etcd-leader", cluster.url("intents-bench"), count, lead, ttl,
                    executor, members)
    on_etcd.report("etcd (3 members), through a leader")
    per_txn = on_etcd.intents_per_txn()
    raw = {}
    for batch in dict.fromkeys((RAW_BATCH, per_txn)):
        settle()
        raw[batch] = asyncio.run(raw_rate(cluster.url(f"raw-bench-{batch}"), count, batch))
    for batch, rate in raw.items():
        print(f"  raw etcd store, guarded creates, {batch:3d} per txn: {rate:8.0f} keys/s "
              f"({ms(batch / rate)} per txn)")
    db = workdir / "sqlite" / "state.db"
    on_sqlite = burst(workdir / "sqlite", f"sqlite:///{db}", count, lead, ttl, executor, [])
    on_sqlite.report("SQLite, through a leader")
    ratios = [f"/ raw etcd {batch} per txn {on_etcd.rate / rate:.2f}x"
              for batch, rate in raw.items()]
    print(f"  ratios, etcd through a leader: {'; '.join(ratios)}; "
          f"/ SQLite through a leader {on_etcd.rate / on_sqlite.rate:.2f}x")
    verdict = "met" if on_etcd.rate >= TARGET_INTENTS_PER_S else "NOT met"
    print(f"  target (issue 4): >= {TARGET_INTENTS_PER_S} intents/s through a leader on "
          f"3-member etcd: {verdict} ({on_etcd.rate:.0f}/s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", choices=["sqlite", "etcd"], default="sqlite",
                        help="the failover phase's store (throughput always uses etcd, "
                             "with SQLite as its peer)")
    parser.add_argument("--kills", type=int, default=20, help="leader kills (failover)")
    parser.add_argument("--ttl", type=float, default=3.0, help="replica lease TTL, s")
    parser.add_argument("--intent-jobs", type=int, default=5000,
                        help="jobs due in the same second (throughput)")
    parser.add_argument("--lead", type=float, default=20.0,
                        help="seconds from starting the replica, which applies the jobs "
                             "file and leads, to the jobs' slot (throughput)")
    parser.add_argument("--executor", choices=["local", "http"], default="local",
                        help="how the burst's jobs launch (throughput; see above)")
    parser.add_argument("--skip-failover", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--tmpfs", action="store_true",
                        help="keep etcd's and SQLite's data in /dev/shm (default: on disk)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the working directory (replica and etcd logs) afterwards")
    args = parser.parse_args()
    etcd_needed = not args.skip_throughput or (not args.skip_failover and args.store == "etcd")
    if args.keep:
        tmp = tempfile.mkdtemp(prefix="distcron-failover-", dir="/dev/shm" if args.tmpfs else None)
        print(f"working directory (kept): {tmp}", flush=True)
        workspace: contextlib.AbstractContextManager[str] = contextlib.nullcontext(tmp)
    else:
        workspace = tempfile.TemporaryDirectory(prefix="distcron-failover-",
                                                dir="/dev/shm" if args.tmpfs else None)
    with workspace as tmp, \
            (etcd_cluster(Path(tmp)) if etcd_needed else contextlib.nullcontext()) as cluster:
        workdir = Path(tmp)
        if not args.skip_failover:
            url = cluster.url("failover-bench") if args.store == "etcd" else None
            failover(workdir / "failover", url, args.store, args.kills, args.ttl)
        if not args.skip_throughput:
            assert cluster is not None
            throughput(workdir / "throughput", cluster, args.intent_jobs, args.lead, args.ttl,
                       args.executor)


if __name__ == "__main__":
    main()
