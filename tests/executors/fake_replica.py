"""A stand-in for a replica: ``python fake_replica.py RUN_DIR REQUEST_JSON...``.

Starts each launch with a LocalExecutor, prints one JSON line with their
statuses, then waits forever, for the test to SIGKILL it.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from distcron.executors.base import LaunchRequest
from distcron.executors.local import LocalExecutor


async def main(run_dir: Path, requests: list[LaunchRequest]) -> None:
    executor = LocalExecutor(run_dir, grace=0.3)
    statuses = [await executor.start(request) for request in requests]
    print(json.dumps([status.to_dict() for status in statuses]), flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]),
                     [LaunchRequest.from_dict(json.loads(arg)) for arg in sys.argv[2:]]))
