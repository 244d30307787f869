"""Micro-benchmark of the etcd store on a real 3-member cluster on this machine.

    .venv/bin/python bench/etcd_bench.py [--n 1000] [--tmpfs]

Starts a cluster with the test harness (``tests/etcd_cluster.py``), then prints
guarded-create throughput — one launch intent per transaction, one at a time
and several in flight, and batches of 100 per transaction (the cluster
milestone asks for 1,000 intents/s with batching) — transaction latency
percentiles, and watch delivery latency. Members keep their data on disk
(every commit waits for fsync on a majority) unless ``--tmpfs`` puts it in
/dev/shm, as the tests do.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.store_bench import batched_creates, ms, percentile, watch_delivery  # noqa: E402

from distcron.store import Compare, Put, Store  # noqa: E402
from distcron.store.etcd import EtcdStore  # noqa: E402
from distcron.store.etcd_url import parse_etcd_url  # noqa: E402
from tests.etcd_cluster import EtcdCluster  # noqa: E402

BATCH = 100
IN_FLIGHT = 8


async def create(store: Store, key: str) -> float:
    began = time.perf_counter()
    result = await store.txn([Compare.missing(key)], [Put(key, b"launching")])
    assert result.succeeded
    return time.perf_counter() - began


async def single_creates(store: Store, n: int) -> list[float]:
    return [await create(store, f"single/{i}") for i in range(n)]


async def concurrent_creates(store: Store, n: int) -> float:
    """Seconds for ``n`` creates, ``IN_FLIGHT`` at a time."""
    keys = iter(range(n))

    async def worker() -> None:
        for i in keys:
            await create(store, f"concurrent/{i}")

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))
    return time.perf_counter() - began


async def run(url: str, n: int) -> None:
    store = EtcdStore(parse_etcd_url(url))
    # The watcher talks to another member, as a follower replica would.
    hosts, _, prefix = url.removeprefix("etcd://").partition("/")
    first, *rest = hosts.split(",")
    other = EtcdStore(parse_etcd_url(f"etcd://{','.join([*rest, first])}/{prefix}"))
    try:
        latencies = await single_creates(store, n)
        print(f"guarded creates, 1 per txn:          {n / sum(latencies):8.0f} txn/s")
        print(
            f"  txn latency: p50 {ms(percentile(latencies, 50))}, "
            f"p99 {ms(percentile(latencies, 99))}, max {ms(max(latencies))}"
        )
        elapsed = await concurrent_creates(store, n)
        print(f"guarded creates, 1 per txn, {IN_FLIGHT} in flight: {n / elapsed:8.0f} txn/s")
        batches = max(1, n * 5 // BATCH)
        elapsed = await batched_creates(store, batches * BATCH, BATCH)
        print(
            f"guarded creates, {BATCH} per txn:        {batches * BATCH / elapsed:8.0f} keys/s "
            f"({batches} txns, {ms(elapsed / batches)} each)"
        )
        delays = await watch_delivery(store, other, 200)
        print(
            f"watch delivery, other member:        p50 {ms(statistics.median(delays))}, "
            f"p99 {ms(percentile(delays, 99))}"
        )
    finally:
        await store.close()
        await other.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="single guarded creates to time")
    parser.add_argument("--tmpfs", action="store_true", help="keep etcd's data in /dev/shm")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir="/dev/shm" if args.tmpfs else None) as tmp:
        cluster = EtcdCluster(Path(tmp) / "etcd")
        cluster.start()
        try:
            print(f"etcd: 3 members, data in {'/dev/shm' if args.tmpfs else tmp}")
            asyncio.run(run(cluster.url("bench"), args.n))
        finally:
            cluster.stop()


if __name__ == "__main__":
    main()
