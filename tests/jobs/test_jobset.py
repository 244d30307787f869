"""Whose jobs an apply may change: the source rules of ``diff_jobs``, checked
over random stored job sets (each job of the API, of one of two config files,
or of no recorded source) and random applies from each source."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from distcron.jobs import API_SOURCE, JobSpec, OwnedByFile, build_spec, diff_jobs
from distcron.store import Compare, Delete, KeyValue, Op, Put
from distcron.store.layout import JOBS, job_key

NOW = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)
FILES = ("/etc/distcron/a.toml", "/srv/b.toml")
SOURCES = (API_SOURCE, *FILES, None)
NAMES = [f"j{n}" for n in range(6)]


def _spec(name: str, command: str, source: str | None = None) -> JobSpec:
    spec = build_spec({"name": name, "schedule": "@daily", "command": command}, now=NOW)
    return spec.model_copy(update={"source": source})


stored_sets = st.dictionaries(st.sampled_from(NAMES),
                              st.tuples(st.sampled_from(("old", "same")),
                                        st.sampled_from(SOURCES)))
applies = st.dictionaries(st.sampled_from(NAMES), st.sampled_from(("new", "same")))


def _store(stored: dict[str, tuple[str, str | None]]) -> dict[str, KeyValue]:
    return {name: KeyValue(job_key(name), _spec(name, command, source).to_json().encode(),
                           n + 1, n + 1, 1)
            for n, (name, (command, source)) in enumerate(sorted(stored.items()))}


def _after(kvs: dict[str, KeyValue], groups: list[tuple[list[Compare], list[Op]]]
           ) -> dict[str, bytes]:
    state = {kv.key: kv.value for kv in kvs.values()}
    for _, ops in groups:
        for op in ops:
            if isinstance(op, Put) and op.key.startswith(JOBS):
                state[op.key] = op.value
            elif isinstance(op, Delete):
                state.pop(op.key, None)
    return state


@given(stored_sets, applies, st.sampled_from((API_SOURCE, *FILES)), st.booleans(),
       st.booleans())
def test_a_source_changes_and_prunes_only_its_own_jobs(
        stored: dict[str, tuple[str, str | None]], named: dict[str, str], source: str,
        prune: bool, take_over: bool) -> None:
    kvs = _store(stored)
    specs = [_spec(name, command) for name, command in sorted(named.items())]
    refused = {name: owner for name, (_, owner) in stored.items()
               if name in named and source == API_SOURCE and owner in FILES}
    if refused and not take_over:
        with pytest.raises(OwnedByFile) as caught:
            diff_jobs(specs, kvs, source=source, prune=prune, now=NOW, take_over=take_over)
        assert caught.value.owners == refused
        assert all(file in str(caught.value) for file in refused.values())
        return
    diff = diff_jobs(specs, kvs, source=source, prune=prune, now=NOW, take_over=take_over)
    # Every job written is guarded by what was read of it.
    assert all(len(compares) == 1 for compares, _ in diff.groups)
    after = _after(kvs, diff.groups)
    for name in NAMES:
        key = job_key(name)
        owner = stored[name][1] if name in stored else None
        mine = name not in stored or owner in (None, source) or (
            source == API_SOURCE and take_over)
        if name in named and mine:
            assert JobSpec.from_json(after[key]) == _spec(name, named[name], source)
        elif name in named:  # a file leaves another source's job as it is
            assert source in FILES and diff.kept[name] == owner
            assert after[key] == kvs[name].value
        elif name in stored and prune and owner == source:
            assert key not in after and name in diff.removed
        elif name in stored:
            assert after[key] == kvs[name].value
        else:
            assert key not in after


def test_the_fields_that_change_are_named_in_the_spec_s_order() -> None:
    stored = {"j": KeyValue(job_key("j"), _spec("j", "a", API_SOURCE).to_json().encode(),
                            1, 1, 1)}
    edited = build_spec({"name": "j", "schedule": "@hourly", "command": "b", "retries": 1},
                        now=NOW)
    diff = diff_jobs([edited], stored, source=API_SOURCE, prune=True, now=NOW)
    assert diff.changed == {"j": ["schedule", "command", "retries"]}
