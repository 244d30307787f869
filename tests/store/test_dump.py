"""Snapshots: every key at one revision, into an empty store of either backend,
with every value equal; a bad file or a store that is not empty is refused and
nothing is written."""

from __future__ import annotations

import io
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from distcron.store import Put, Store
from distcron.store.dump import SnapshotError, read, restore, save
from distcron.store.layout import IDENTITY, LEADER, RESTORED, replica_key
from distcron.store.sqlite import SqliteStore
from tests.store.conftest import EtcdHarness, Harness, SqliteHarness

pytestmark = pytest.mark.anyio
NOW = datetime(2026, 12, 2, 18, 30, tzinfo=UTC)
STATE = {
    "jobs/backup": b'{"name": "backup", "schedule": "0 3 * * *", "command": "true"}',
    "cursors/backup": b'{"slot": "2026-12-02T03:00:00Z"}',
    "launches/backup@2026-12-02T03:00:00Z": b'{"state": "succeeded"}',
    "output/backup@2026-12-02T03:00:00Z": bytes(range(256)),
    IDENTITY: b"2f1c0d0e-0000-4000-8000-000000000001",
}


async def fill(store: Store) -> None:
    await store.txn([], [Put(key, value) for key, value in STATE.items()])
    lease = await store.lease_grant(30)
    await store.txn([], [Put(LEADER, b'{"id": "r1"}', lease),
                         Put(replica_key("r1"), b"{}", lease)])


@pytest.mark.parametrize("target", ["sqlite", pytest.param("etcd", marks=pytest.mark.cluster)])
async def test_a_snapshot_restores_every_key_into_an_empty_store_of_either_backend(
        backend: Harness, store: Store, target: str, tmp_path: Path,
        request: pytest.FixtureRequest) -> None:
    await fill(store)
    out = io.StringIO()
    summary = await save(store, out, NOW)
    assert summary.keys == len(STATE)  # the leader and registrations are not saved
    harness: Harness = (SqliteHarness(tmp_path / "target.db") if target == "sqlite" else
                        EtcdHarness(request.getfixturevalue("etcd_cluster").url(
                            f"test-{uuid.uuid4().hex}")))
    try:
        restored = harness.connect()
        await restore(restored, io.StringIO(out.getvalue()), NOW)
        kvs, _ = await restored.range("")
        got = {kv.key: kv.value for kv in kvs}
        marker = json.loads(got.pop(RESTORED))
        assert marker["at"] == "2026-12-02T18:30:00Z"
        assert marker["snapshot_revision"] == summary.revision
        expected = {k: v for k, v in STATE.items() if k != IDENTITY}
        assert got == expected  # a new incarnation: no identity, no leader
    finally:
        await harness.close()


async def test_a_truncated_or_altered_snapshot_is_refused_and_writes_nothing(
        store: Store, tmp_path: Path) -> None:
    await fill(store)
    out = io.StringIO()
    await save(store, out, NOW)
    lines = out.getvalue().splitlines(keepends=True)
    target = SqliteStore(tmp_path / "new.db")
    try:
        with pytest.raises(SnapshotError, match="truncated"):
            await restore(target, lines[:-2], NOW)
        altered = [*lines[:2], lines[2].replace('"key": "', '"key": "x'), *lines[3:]]
        with pytest.raises(SnapshotError, match="altered"):
            await restore(target, altered, NOW)
        with pytest.raises(SnapshotError, match="line 1"):
            await restore(target, ["not json\n"], NOW)
        with pytest.raises(SnapshotError, match="version"):
            read([json.dumps({"format": "distcron-snapshot", "version": 99}) + "\n"])
        assert (await target.range(""))[0] == []
    finally:
        await target.close()


async def test_a_store_that_is_not_empty_is_refused(store: Store, tmp_path: Path) -> None:
    await fill(store)
    out = io.StringIO()
    await save(store, out, NOW)
    with pytest.raises(SnapshotError, match="not empty"):
        await restore(store, io.StringIO(out.getvalue()), NOW)
    assert (await store.get(RESTORED)) is None
