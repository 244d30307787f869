"""The jobs (and ``[[notifier]]`` tables) of a replica's config file, reconciled
with the store's.

The file is the whole set of its own jobs: those it names are added or
updated, its own that it no longer names are removed, and jobs of another
source (applied through the API, taken over, or another config file's) are
left as they are (see :mod:`distcron.jobs.jobset`). A job is the file's by its
absolute path, so a replica started from another directory still knows it.

Several replicas may start with the same file at once: the write is guarded
by every job key it read, so one wins and the others, retrying, find nothing
left to change.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from distcron.clock import Clock
from distcron.errors import Conflict
from distcron.jobs import diff_jobs, diff_notifiers, parse_jobs_file, write_diff
from distcron.store import Store
from distcron.store.layout import JOBS, NOTIFIERS, name_of

log = logging.getLogger("distcron.serve")

_ATTEMPTS = 5


def file_source(path: str) -> str:
    """The source recorded on a config file's jobs: its absolute path."""
    return os.path.abspath(path)


async def apply_config_jobs(store: Store, text: str, source: str, clock: Clock,
                            document: dict[str, Any] | None = None) -> None:
    """Validate every job first (a bad file changes nothing), then reconcile the
    file's own jobs; ``source`` is the file's path; ``document``, ``text``
    parsed already, if it was."""
    owner = file_source(source)
    found = await asyncio.to_thread(parse_jobs_file, text, source, ("serve",), clock.now(),
                                    None, document)
    for _ in range(_ATTEMPTS):
        kvs, _revision = await store.range(JOBS)
        stored = {name_of(kv.key, JOBS): kv for kv in kvs}
        notifier_kvs, _revision = await store.range(NOTIFIERS)
        notifiers = {name_of(kv.key, NOTIFIERS): kv for kv in notifier_kvs}
        diff = diff_jobs(found.jobs, stored, source=owner, prune=True, now=clock.now())
        diff_notifiers(diff, found.jobs, found.notifiers, notifiers, source=owner, prune=True,
                       file=source)
        for name, other in sorted(diff.kept.items()):
            log.warning("event=job_kept file=%s job=%s source=%s reason=%r", source, name,
                        other, "another source owns it, so the file's version is not applied; "
                        "remove it (jobs remove --take-over) for the file to own it")
        for name, other in sorted(diff.notifiers_kept.items()):
            log.warning("event=notifier_kept file=%s notifier=%s source=%s reason=%r", source,
                        name, other, "another source owns it, so the file's version is not "
                        "applied")
        if not diff.changes:
            return
        try:
            await write_diff(store, diff, clock.now())
        except Conflict:
            continue
        log.info("event=jobs_applied file=%s added=%d changed=%d removed=%d notifiers_added=%d "
                 "notifiers_changed=%d notifiers_removed=%d", source, len(diff.added),
                 len(diff.changed), len(diff.removed), len(diff.notifiers_added),
                 len(diff.notifiers_changed), len(diff.notifiers_removed))
        return
    raise Conflict(JOBS, f"jobs kept changing while {source} was applied")
