"""Benchmark of the cron engine against croniter and cronsim.

Run: .venv/bin/python bench/cron_bench.py [--quick]

Prints microseconds per ``next()`` for (a) successive slots (each result fed back)
and (b) queries after random instants, per expression and zone, with the ratios
croniter/distcron and cronsim/distcron and their geometric means per zone; then
the cost of parsing (first compile and interned) and the memory held by 100,000
distinct compiled schedules. Every figure is the best of several repeats, because
the machine is shared and noisy.

Fairness notes: croniter reuses one parsed object (``get_next(start_time=...)``);
cronsim has no way to query a parsed expression at a new instant, so (b) builds a
``CronSim`` per query, which includes parsing: that is the cost a caller pays.
"""

from __future__ import annotations

import argparse
import gc
import math
import random
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from croniter import croniter  # type: ignore[import-untyped]
from cronsim import CronSim

from distcron.cron import parse
from distcron.cron.compile import compile_schedule

EXPRESSIONS = (
    "* * * * *",
    "*/5 * * * *",
    "0 0 * * *",
    "20 8-22/2 * 6-8 1,3,5",
    "0 0 29 2 *",
    "0 9 * * 1-5",
)
ZONES = ("UTC", "America/New_York")
START = datetime(2026, 1, 15, 10, 7, 3)


def best_of(repeats: int, run: Callable[[], int]) -> float:
    """Best seconds per operation over ``repeats`` runs; ``run`` returns its op count."""
    best = math.inf
    for _ in range(repeats):
        gc.collect()
        t0 = time.perf_counter()
        ops = run()
        best = min(best, (time.perf_counter() - t0) / ops)
    return best * 1e6


def successive(expr: str, zone: ZoneInfo, n: int, repeats: int) -> dict[str, float]:
    start = START.replace(tzinfo=zone)
    schedule = parse(expr, zone.key)

    def ours() -> int:
        t = start
        nxt = schedule.next
        for _ in range(n):
            t = nxt(t)
        return n

    def theirs_croniter() -> int:
        it = croniter(expr, start)
        for _ in range(n):
            it.get_next(datetime)
        return n

    def theirs_cronsim() -> int:
        it = CronSim(expr, start)
        for _ in range(n):
            next(it)
        return n

    return {
        "distcron": best_of(repeats, ours),
        "croniter": best_of(repeats, theirs_croniter),
        "cronsim": best_of(repeats, theirs_cronsim),
    }


def random_instants(zone: ZoneInfo, n: int, seed: int) -> list[datetime]:
    rng = random.Random(seed)
    base = datetime(2000, 1, 1, tzinfo=UTC)
    span = int((datetime(2040, 1, 1, tzinfo=UTC) - base).total_seconds())
    return [(base + timedelta(seconds=rng.randrange(span))).astimezone(zone) for _ in range(n)]


def random_queries(expr: str, zone: ZoneInfo, n: int, repeats: int) -> dict[str, float]:
    instants = random_instants(zone, n, seed=hash(expr) & 0xFFFF)
    schedule = parse(expr, zone.key)
    for t in instants:  # warm the zone's per-day cache, as a long-running scheduler has it
        schedule.next(t)

    def ours() -> int:
        nxt = schedule.next
        for t in instants:
            nxt(t)
        return n

    reused = croniter(expr, instants[0])

    def theirs_croniter() -> int:
        for t in instants:
            reused.get_next(datetime, start_time=t)
        return n

    def theirs_cronsim() -> int:
        for t in instants:
            next(CronSim(expr, t))
        return n

    return {
        "distcron": best_of(repeats, ours),
        "croniter": best_of(repeats, theirs_croniter),
        "cronsim": best_of(repeats, theirs_cronsim),
    }


def parse_costs(repeats: int) -> dict[str, float]:
    exprs = [*EXPRESSIONS]
    start = START.replace(tzinfo=UTC)

    fresh = iter(range(1, 1_000_000))

    def first() -> int:
        # Trailing blanks make each text new, so nothing is reused from any cache.
        for e in exprs:
            compile_schedule(e + " " * next(fresh), "America/New_York", None)
        return len(exprs)

    def interned() -> int:
        for _ in range(100):
            for e in exprs:
                parse(e, "America/New_York")
        return 100 * len(exprs)

    def theirs_croniter() -> int:
        for e in exprs:
            croniter(e, start)
        return len(exprs)

    def theirs_cronsim() -> int:
        for e in exprs:
            CronSim(e, start)
        return len(exprs)

    return {
        "distcron first compile": best_of(repeats, first),
        "distcron interned": best_of(repeats, interned),
        "croniter constructor": best_of(repeats, theirs_croniter),
        "cronsim constructor": best_of(repeats, theirs_cronsim),
    }


def memory_for(count: int) -> tuple[float, float]:
    """(MB, seconds) held by / taken to compile ``count`` distinct schedules: jobs
    spread over a few shapes, each with its own name, as a large installation has."""
    shapes = ("H H * * *", "H/15 * * * *", "H H(0-5) * * 1-5", "H 9-17 * * *", "H H H * *")
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    t0 = time.perf_counter()
    kept = [
        parse(shapes[i % len(shapes)], "Europe/Amsterdam", job=f"job-{i}") for i in range(count)
    ]
    seconds = time.perf_counter() - t0
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert len(set(kept)) == count
    return (after - before) / 1e6, seconds


def geomean(values: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run)")
    args = parser.parse_args()
    # 1,000 successive leap days already reach the year 6026.
    n, repeats = (300, 3) if args.quick else (1000, 7)

    header = (
        f"{'zone':17} {'expression':23} {'mode':10} {'distcron':>9} {'croniter':>9} "
        f"{'cronsim':>9} {'ci/dc':>7} {'cs/dc':>7}"
    )
    print("microseconds per next() (best of", repeats, "runs)")
    print(header)
    print("-" * len(header))
    worst_vs_cronsim = math.inf
    for zone_name in ZONES:
        zone = ZoneInfo(zone_name)
        vs_croniter: list[float] = []
        vs_cronsim: list[float] = []
        for expr in EXPRESSIONS:
            for mode, run in (("successive", successive), ("random", random_queries)):
                r = run(expr, zone, n, repeats)
                a, b = r["croniter"] / r["distcron"], r["cronsim"] / r["distcron"]
                vs_croniter.append(a)
                vs_cronsim.append(b)
                worst_vs_cronsim = min(worst_vs_cronsim, b)
                print(
                    f"{zone_name:17} {expr:23} {mode:10} {r['distcron']:9.2f} "
                    f"{r['croniter']:9.2f} {r['cronsim']:9.2f} {a:7.1f} {b:7.1f}"
                )
        print(
            f"{zone_name:17} {'geometric mean':23} {'':10} {'':>9} {'':>9} {'':>9} "
            f"{geomean(vs_croniter):7.1f} {geomean(vs_cronsim):7.1f}"
        )
        print("-" * len(header))
    print(f"smallest cronsim/distcron ratio: {worst_vs_cronsim:.1f}")
    print()
    print("parse cost, microseconds per expression (America/New_York)")
    for name, value in parse_costs(repeats).items():
        print(f"  {name:24} {value:9.2f}")
    print()
    count = 100_000
    mb, seconds = memory_for(count)
    print(
        f"memory for {count:,} distinct compiled schedules: {mb:.1f} MB "
        f"({mb * 1e6 / count:.0f} bytes each; compiled in {seconds:.1f} s)"
    )


if __name__ == "__main__":
    main()
