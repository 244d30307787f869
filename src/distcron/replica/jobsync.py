"""The jobs of a replica's config file, made the store's whole job set.

Several replicas may start with the same file at once: the write is guarded
by every job key it read, so one wins and the others, retrying, find nothing
left to change.
"""

from __future__ import annotations

import logging

from distcron.api.apply import diff_jobs, write_diff
from distcron.clock import Clock
from distcron.errors import Conflict
from distcron.jobs import parse_jobs_toml
from distcron.store import Store
from distcron.store.layout import JOBS, name_of

log = logging.getLogger("distcron.serve")

_ATTEMPTS = 5


async def apply_config_jobs(store: Store, text: str, source: str, clock: Clock) -> None:
    """Validate every job first (a bad file changes nothing), then apply."""
    specs = parse_jobs_toml(text, source, ignore=("serve",))
    for _ in range(_ATTEMPTS):
        kvs, _revision = await store.range(JOBS)
        stored = {name_of(kv.key, JOBS): kv for kv in kvs}
        diff = diff_jobs(specs, stored, prune=True, now=clock.now())
        if not diff.changes:
            return
        try:
            await write_diff(store, diff)
        except Conflict:
            continue
        log.info("event=jobs_applied file=%s added=%d changed=%d removed=%d", source,
                 len(diff.added), len(diff.changed), len(diff.removed))
        return
    raise Conflict(JOBS, f"jobs kept changing while {source} was applied")
