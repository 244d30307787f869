"""A stand-in for a replica: ``python fake_replica.py RUN_DIR [--stage] REQUEST_JSON...``.

Starts each launch with a LocalExecutor (or, with ``--stage``, stages them to
be released within a minute), prints one JSON line with their statuses, then
waits forever, for the test to SIGKILL it.
"""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from distcron.executors.base import LaunchRequest, RunStatus
from distcron.executors.local import LocalExecutor


async def main(run_dir: Path, stage: bool, requests: list[LaunchRequest]) -> None:
    executor = LocalExecutor(run_dir, grace=0.3)
    if stage:
        staged = await executor.stage(requests, datetime.now(UTC) + timedelta(minutes=1))
        statuses = [status for status in staged if isinstance(status, RunStatus)]
        assert len(statuses) == len(requests), staged
    else:
        statuses = [await executor.start(request) for request in requests]
    print(json.dumps([status.to_dict() for status in statuses]), flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    args = sys.argv[2:]
    stage = bool(args) and args[0] == "--stage"
    asyncio.run(main(Path(sys.argv[1]), stage,
                     [LaunchRequest.from_dict(json.loads(arg)) for arg in args[stage:]]))
