"""Another OS process on the same SQLite file, driven by test_sqlite.py.

``python proc_helper.py race PATH KEYS NAME``: opens the store, prints
``ready``, waits for a line on stdin, then tries to create ``race/0`` …
``race/<KEYS-1>`` with a ``Compare.missing`` guard, and prints the keys it won
as a JSON list.

``python proc_helper.py hold PATH TTL``: grants a lease, puts ``election/leader``
with it, prints ``ready <monotonic time of the grant>`` and keeps the lease
alive until it is killed.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from distcron.store import Compare, Put
from distcron.store.sqlite import SqliteStore


async def race(path: str, keys: int, name: str) -> None:
    store = SqliteStore(path)
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    won = []
    for i in range(keys):
        key = f"race/{i}"
        result = await store.txn([Compare.missing(key)], [Put(key, name.encode())])
        if result.succeeded:
            won.append(key)
    print(json.dumps(won), flush=True)
    await store.close()


async def hold(path: str, ttl: float) -> None:
    store = SqliteStore(path)
    granted = time.monotonic()
    lease = await store.lease_grant(ttl)
    await store.put("election/leader", b"doomed", lease=lease)
    print(f"ready {granted}", flush=True)
    while True:
        await asyncio.sleep(ttl / 4)
        await store.lease_keepalive(lease)


if __name__ == "__main__":
    command, path, *rest = sys.argv[1:]
    if command == "race":
        asyncio.run(race(path, int(rest[0]), rest[1]))
    else:
        asyncio.run(hold(path, float(rest[0])))
