"""Making the store's jobs what a jobs file says: the diff, its parts, its guards.

A jobs file is the whole set of jobs of its source, like an installed crontab.
Each stored job records its source: the absolute path of the config file a
replica reconciles at start and on SIGHUP, or ``api`` for jobs put, applied or
taken over through the API (``None``: stored before sources were recorded).
A source changes and removes only its own jobs:

- a config file adds and updates the jobs it names, claims those with no
  source, removes its own that it no longer names, and leaves every job of
  another source as it is (logged by the caller);
- the API adds and updates its own jobs (and those with no source); a job of a
  config file is refused (:class:`OwnedByFile`, naming the file) unless the
  caller takes it over, which makes it the API's from then on; a prune removes
  only the API's own.

Every job is validated first, by the caller (a bad file changes nothing); then
the diff is written in one transaction that compares the ``mod_revision`` of
every job key it read (and the absence of every job it adds), so an edit made
meanwhile fails the whole apply with :class:`~distcron.errors.Conflict` instead
of being overwritten.

A diff larger than one transaction may be (etcd's ``--max-txn-ops``, 128 by
default) is written through a journal, whole or not at all all the same (see
:mod:`distcron.jobs.journal`). Every write of job or notifier keys is refused
while such an apply is in progress.

Pausing is state people set at run time, not part of what a file or a PUT
describes: a spec that does not say ``paused`` keeps the stored value.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from distcron.bulk import collector_held
from distcron.errors import DistcronError
from distcron.jobs.journal import no_apply, refusal, write_journaled
from distcron.jobs.notifier import NotifierSpec
from distcron.jobs.problems import JobSpecErrors, Problem
from distcron.jobs.spec import JobSpec
from distcron.store import Compare, Delete, KeyValue, Op, Put, Store
from distcron.store.layout import JOBS, Cursor, cursor_key, cursor_value, job_key, notifier_key

API_SOURCE = "api"


class OwnedByFile(DistcronError):
    """Jobs (or notifiers) that a config file defines were to be changed through the API."""

    def __init__(self, owners: Mapping[str, str], kind: str = "job") -> None:
        self.owners = dict(owners)  # job -> the file that defines it
        names = ", ".join(repr(name) for name in sorted(self.owners))
        files = ", ".join(sorted(set(self.owners.values())))
        which = f"{kind} {names} is" if len(self.owners) == 1 else f"{kind}s {names} are"
        super().__init__(
            f"{which} defined in {files}: change it there and reload the replica (SIGHUP), "
            "or take it over (take_over=true, `--take-over`) to manage it through the API "
            "from now on")


def is_file_source(source: str | None) -> bool:
    return source is not None and source != API_SOURCE


def keep_paused(spec: JobSpec, stored: JobSpec | None) -> JobSpec:
    """``spec``, paused as the stored job is unless ``spec`` says otherwise."""
    if stored is None or "paused" in spec.model_fields_set or spec.paused == stored.paused:
        return spec
    return spec.model_copy(update={"paused": stored.paused})


def owned(spec: JobSpec, source: str) -> JobSpec:
    return spec if spec.source == source else spec.model_copy(update={"source": source})


def create_ops(spec: JobSpec, now: datetime) -> list[Put]:
    """A new job's writes: its spec and its cursor, to be committed together. The
    cursor is the creation instant: a new job owns only the slots after it."""
    return [
        Put(job_key(spec.name), spec.to_json().encode()),
        Put(cursor_key(spec.name), cursor_value(Cursor(now))),
    ]


def changed_fields(old: JobSpec, new: JobSpec) -> list[str]:
    """The keys whose values differ, in the spec's order."""
    before, after = old.model_dump(mode="json"), new.model_dump(mode="json")
    return [key for key in JobSpec.model_fields if before[key] != after[key]]


@dataclass
class JobsDiff:
    added: list[str] = field(default_factory=list)
    # Per changed job, the keys that change.
    changed: dict[str, list[str]] = field(default_factory=dict)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    # Jobs the file names that another source owns: left as they are.
    kept: dict[str, str | None] = field(default_factory=dict)
    # The same for the file's [[notifier]] tables.
    notifiers_added: list[str] = field(default_factory=list)
    notifiers_changed: list[str] = field(default_factory=list)
    notifiers_removed: list[str] = field(default_factory=list)
    notifiers_unchanged: list[str] = field(default_factory=list)
    notifiers_kept: dict[str, str | None] = field(default_factory=dict)
    # Per job: its guards and its writes (none when unchanged), kept together.
    groups: list[tuple[list[Compare], list[Op]]] = field(default_factory=list)

    def add(self, compare: Compare, ops: list[Op]) -> None:
        self.groups.append(([compare], ops))

    @property
    def changes(self) -> bool:
        return any(ops for _, ops in self.groups)


def _mine(stored_source: str | None, source: str) -> bool:
    """Whether ``source`` may change and remove a job stored with ``stored_source``."""
    if stored_source is None:
        return True  # stored before sources were recorded: anyone's to claim
    return stored_source == source


@collector_held()
def diff_jobs(specs: Iterable[JobSpec], stored: Mapping[str, KeyValue], *, source: str,
              prune: bool, now: datetime, take_over: bool = False) -> JobsDiff:
    """What applying ``specs`` from ``source`` over the ``stored`` job keys changes,
    and the guarded writes (see the module docstring). Raises OwnedByFile when
    the API would change a file's jobs without ``take_over``."""
    diff = JobsDiff()
    refused: dict[str, str] = {}
    olds = {name: JobSpec.from_json(kv.value, source=kv.key) for name, kv in stored.items()}
    in_file: set[str] = set()
    for given in specs:
        in_file.add(given.name)
        spec = owned(given, source)
        kv, old = stored.get(spec.name), olds.get(spec.name)
        if kv is None or old is None:
            diff.added.append(spec.name)
            diff.add(Compare.missing(job_key(spec.name)), list(create_ops(spec, now)))
            continue
        if not _mine(old.source, source):
            if is_file_source(source):
                diff.kept[spec.name] = old.source
                continue
            if not take_over:
                refused[spec.name] = old.source or ""
                continue
        new = keep_paused(spec, old)
        # Guarded even when unchanged: the store must end up as the file says.
        guard = Compare.modified_at(kv.key, kv.mod_revision)
        fields = changed_fields(old, new)
        if not fields:
            diff.unchanged.append(spec.name)
            diff.add(guard, [])
        else:
            diff.changed[spec.name] = fields
            diff.add(guard, [Put(kv.key, new.to_json().encode())])
    if refused:
        raise OwnedByFile(refused)
    if prune:
        # A job with no source is claimed by the first source that names it, and
        # pruned by none: nobody can tell whose it was.
        for name, kv in stored.items():
            if name not in in_file and olds[name].source == source:
                diff.removed.append(name)
                diff.add(Compare.modified_at(kv.key, kv.mod_revision),
                         [Delete(kv.key), Delete(cursor_key(name))])
    return diff


def diff_notifiers(diff: JobsDiff, jobs: Iterable[JobSpec], notifiers: Iterable[NotifierSpec],
                   stored: Mapping[str, KeyValue], *, source: str, prune: bool,
                   file: str, take_over: bool = False) -> None:
    """Add to ``diff`` the writes that make the store's notifiers of ``source``
    what the file declares, by the rules for jobs (the module docstring),
    written before the jobs. Raises JobSpecErrors (naming ``file``) when a job
    names in ``notify`` a notifier that neither the file nor the store will
    hold, and OwnedByFile as :func:`diff_jobs` does."""
    groups: list[tuple[list[Compare], list[Op]]] = []
    refused: dict[str, str] = {}
    olds = {name: NotifierSpec.from_json(kv.value, source=kv.key) for name, kv in stored.items()}
    declared: set[str] = set()
    for given in notifiers:
        declared.add(given.name)
        spec = given.model_copy(update={"source": source})
        kv, old = stored.get(spec.name), olds.get(spec.name)
        key = notifier_key(spec.name)
        if kv is None or old is None:
            diff.notifiers_added.append(spec.name)
            groups.append(([Compare.missing(key)], [Put(key, spec.to_json().encode())]))
            continue
        if not _mine(old.source, source):
            if is_file_source(source):
                diff.notifiers_kept[spec.name] = old.source
                continue
            if not take_over:
                refused[spec.name] = old.source or ""
                continue
        guard = Compare.modified_at(key, kv.mod_revision)
        if old == spec:
            diff.notifiers_unchanged.append(spec.name)
            groups.append(([guard], []))
        else:
            diff.notifiers_changed.append(spec.name)
            groups.append(([guard], [Put(key, spec.to_json().encode())]))
    if refused:
        raise OwnedByFile(refused, kind="notifier")
    if prune:
        for name, kv in stored.items():
            if name not in declared and olds[name].source == source:
                diff.notifiers_removed.append(name)
                groups.append(([Compare.modified_at(kv.key, kv.mod_revision)],
                               [Delete(kv.key)]))
    available = declared | (stored.keys() - set(diff.notifiers_removed))
    problems = [
        Problem(f"names notifier {name!r}, which is neither declared in the file "
                "([[notifier]]) nor in the store", job=job.name, field="notify")
        for job in jobs for name in job.notify if name not in available]
    if problems:
        raise JobSpecErrors(file, problems)
    diff.groups[:0] = groups


def check_api_may_change(stored: JobSpec, take_over: bool) -> None:
    """Raises OwnedByFile when ``stored`` is a config file's and the API caller
    did not take it over."""
    if is_file_source(stored.source) and not take_over:
        assert stored.source is not None
        raise OwnedByFile({stored.name: stored.source})


def fits_one_transaction(store: Store, diff: JobsDiff) -> bool:
    """Whether the diff is written in one transaction (else through the journal)."""
    limit = store.max_txn_ops
    compares = sum(len(group) for group, _ in diff.groups)
    ops = sum(len(group) for _, group in diff.groups)
    return limit is None or (compares + 1 <= limit and ops <= limit)


async def write_diff(store: Store, diff: JobsDiff, now: datetime) -> int:
    """Write the diff whole (see the module docstring); returns the last revision
    written. Raises Conflict when a job changed since it was read, or while an
    apply is in progress."""
    compares = [compare for group, _ in diff.groups for compare in group]
    ops = [op for _, group in diff.groups for op in group]
    with collector_held():  # the store writes as many rows as the diff has jobs, and more
        if not fits_one_transaction(store, diff):
            assert store.max_txn_ops is not None
            return await write_journaled(store, compares, ops, store.max_txn_ops, now)
        result = await store.txn([*compares, no_apply()], ops)
    if not result.succeeded:
        raise await refusal(store, JOBS, "jobs changed while the file was being applied; "
                            "nothing was written")
    return result.revision
