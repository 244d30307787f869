"""Micro-benchmark of the SQLite store, on a file in a temporary directory.

    .venv/bin/python bench/store_bench.py [--n 1000]

Prints guarded-create throughput (one key per transaction, and 50 per
transaction), transaction latency percentiles, watch delivery latency (to a
watch on the same store instance, and to another instance, which learns of
changes by polling, as another process would), and the CPU that polling costs
while nothing happens.
Figures depend on the disk: every commit waits for fsync.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from contextlib import aclosing
from pathlib import Path

from distcron.store import Compare, Put, Store
from distcron.store.sqlite import DEFAULT_POLL_INTERVAL, SqliteStore

BATCH = 50


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


async def single_creates(store: Store, n: int) -> list[float]:
    latencies = []
    for i in range(n):
        key = f"single/{i}"
        began = time.perf_counter()
        result = await store.txn([Compare.missing(key)], [Put(key, b"launch")])
        latencies.append(time.perf_counter() - began)
        assert result.succeeded
    return latencies


async def batched_creates(store: Store, n: int, batch: int = BATCH) -> float:
    """Seconds to create ``n`` keys, ``batch`` guarded creates per transaction."""
    began = time.perf_counter()
    for b in range(n // batch):
        keys = [f"batch/{b}/{i}" for i in range(batch)]
        result = await store.txn(
            [Compare.missing(k) for k in keys], [Put(k, b"launch") for k in keys]
        )
        assert result.succeeded
    return time.perf_counter() - began


async def watch_delivery(writer: Store, watcher: Store, samples: int) -> list[float]:
    """Seconds from just before a write to its arrival at ``watcher``'s watch."""
    start = await watcher.revision() + 1
    delays: list[float] = []
    async with aclosing(watcher.watch("delivery/", start)) as watch:

        async def receive() -> None:
            async for batch in watch:
                arrived = time.perf_counter()
                delays.extend(arrived - float(e.kv.value) for e in batch.events)
                if len(delays) >= samples:
                    return

        receiving = asyncio.create_task(receive())
        for i in range(samples):
            await writer.put(f"delivery/{i % 10}", repr(time.perf_counter()).encode())
            # Spread writes out so each one meets the poller at a different phase.
            await asyncio.sleep(0.003 + (i % 7) * 0.002)
        await asyncio.wait_for(receiving, 30)
    return delays


async def idle_cpu(store: Store, seconds: float) -> float:
    """Fraction of one core this process uses while one watch waits for nothing."""
    async with aclosing(store.watch("idle/", await store.revision() + 1)) as watch:
        waiting = asyncio.create_task(anext(watch))
        await asyncio.sleep(0.2)  # let the poller start
        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.sleep(seconds)
        used = (time.process_time() - cpu) / (time.perf_counter() - wall)
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
    return used


async def main(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.db"
        store = SqliteStore(path)
        other = SqliteStore(path)
        try:
            latencies = await single_creates(store, n)
            total = sum(latencies)
            print(f"guarded creates, 1 per txn:   {n / total:8.0f} txn/s  ({n} txns)")
            print(
                f"  txn latency: p50 {ms(percentile(latencies, 50))}, "
                f"p99 {ms(percentile(latencies, 99))}, max {ms(max(latencies))}"
            )
            elapsed = await batched_creates(store, n * 5)
            keys = n * 5 // BATCH * BATCH
            print(
                f"guarded creates, {BATCH} per txn:  {keys / elapsed:8.0f} keys/s "
                f"({keys // BATCH} txns, {ms(elapsed / (keys // BATCH))} each)"
            )
            local = await watch_delivery(store, store, 200)
            print(
                f"watch delivery, same instance:    p50 {ms(statistics.median(local))}, "
                f"p99 {ms(percentile(local, 99))}"
            )
            remote = await watch_delivery(store, other, 200)
            print(
                f"watch delivery, other instance (poll {ms(DEFAULT_POLL_INTERVAL)}): "
                f"p50 {ms(statistics.median(remote))}, p99 {ms(percentile(remote, 99))}"
            )
            idle = await idle_cpu(other, 3)
            # Both instances have had watches, so both poll: as two replicas would.
            print(f"idle CPU, 2 instances polling:    {idle * 100:.2f}% of one core")
        finally:
            await store.close()
            await other.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="guarded creates to time")
    asyncio.run(main(parser.parse_args().n))
