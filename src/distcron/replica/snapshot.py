"""What a new leader reads from the store before it decides anything."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime

from distcron.scheduler.plan import Cursor
from distcron.scheduler.records import LaunchRecord
from distcron.store import Store
from distcron.store.layout import ACTIVE, CURSORS, JOBS, LAUNCHES, launch_key, name_of

# Past this many records to fetch, one range read of every record is cheaper
# than a read per record.
_FETCH_ONE_BY_ONE = 1000


@dataclass(slots=True)
class Snapshot:
    revision: int
    jobs: dict[str, bytes] = field(default_factory=dict)  # job specs as stored (JSON)
    cursors: dict[str, Cursor] = field(default_factory=dict)
    # Live launches, and the skipped/missed span each cursor points at.
    records: list[LaunchRecord] = field(default_factory=list)


def parse_cursor(value: bytes) -> Cursor:
    body = json.loads(value)
    return Cursor(datetime.fromisoformat(body["slot"]), body.get("gap"))


async def load_snapshot(store: Store) -> Snapshot:
    """Jobs, cursors and live launches, read at one revision (or later: each
    read is consistent, and the watches that follow start after the first)."""
    jobs, revision = await store.range(JOBS)
    snapshot = Snapshot(revision)
    snapshot.jobs = {name_of(kv.key, JOBS): kv.value for kv in jobs}
    cursors, _ = await store.range(CURSORS)
    for kv in cursors:
        snapshot.cursors[name_of(kv.key, CURSORS)] = parse_cursor(kv.value)
    wanted = [name_of(kv.key, ACTIVE) for kv in (await store.range(ACTIVE))[0]]
    wanted += [c.gap for c in snapshot.cursors.values() if c.gap]
    if len(wanted) > _FETCH_ONE_BY_ONE:
        keys = {launch_key(launch_id) for launch_id in wanted}
        found = [kv for kv in (await store.range(LAUNCHES))[0] if kv.key in keys]
    else:
        found = [kv for kv in [await store.get(launch_key(i)) for i in wanted] if kv]
    snapshot.records = [LaunchRecord.from_json(kv.value) for kv in found]
    return snapshot
