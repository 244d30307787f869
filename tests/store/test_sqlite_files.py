"""The SQLite store's files: private modes, the file removed or replaced under
an open store, and an older copy put back (the high-water mark)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import sqlite3
import stat
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from distcron.errors import StoreReplaced
from distcron.store.identity import store_identity
from distcron.store.layout import IDENTITY, RESTORED
from distcron.store.sqlite import SqliteStore
from distcron.store.sqlite_files import HighWater
from tests.waiting import eventually

pytestmark = pytest.mark.anyio


@pytest.fixture
def base() -> Iterator[Path]:
    """A directory every user may enter (tmp_path's parents are 0700, which would
    hide the store from another user whatever its own modes)."""
    root = Path("/tmp") / f"distcron-modes-{os.getpid()}-{os.urandom(4).hex()}"
    root.mkdir(mode=0o755)
    root.chmod(0o755)
    yield root
    shutil.rmtree(root)


@pytest.fixture
async def opened() -> AsyncIterator[list[SqliteStore]]:
    stores: list[SqliteStore] = []
    yield stores
    for store in stores:
        await store.close()


@pytest.fixture
def open_at(opened: list[SqliteStore]) -> Callable[..., SqliteStore]:
    def open_store_at(path: Path, **options: Any) -> SqliteStore:
        store = SqliteStore(path, poll_interval=0.02, **options)
        opened.append(store)
        return store
    return open_store_at


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def read_as_nobody(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "cat", str(path)],
        capture_output=True, text=True, check=False, timeout=10)


async def test_a_new_store_is_private_to_its_owner(base: Path,
                                                   open_at: Callable[..., SqliteStore]) -> None:
    store = open_at(base / "data" / "state.db")
    await store.put("jobs/secret", b'{"env": {"TOKEN": "hunter2"}}')
    data = base / "data"
    assert mode(data) == 0o700
    for name in ("state.db", "state.db-wal", "state.db-shm"):
        assert mode(data / name) == 0o600, name


@pytest.mark.skipif(os.geteuid() != 0, reason="reading as another user needs root (setpriv)")
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv (util-linux) is missing")
async def test_another_user_cannot_read_the_store_or_its_wal(
        base: Path, open_at: Callable[..., SqliteStore]) -> None:
    control = base / "readable"
    control.write_text("anyone may read this\n")
    control.chmod(0o644)
    # The check itself works: nobody reads a world-readable file beside the store.
    assert read_as_nobody(control).stdout == "anyone may read this\n"
    store = open_at(base / "data" / "state.db")
    await store.put("jobs/secret", b"hunter2")
    data = base / "data"
    # Even with the directory opened up, the files themselves refuse.
    data.chmod(0o755)
    for name in ("state.db", "state.db-wal"):
        result = read_as_nobody(data / name)
        assert result.returncode != 0 and "Permission denied" in result.stderr, name
    data.chmod(0o700)
    result = read_as_nobody(data / "state.db")
    assert result.returncode != 0 and "Permission denied" in result.stderr


async def test_a_store_readable_by_others_is_warned_about_in_one_line(
        base: Path, open_at: Callable[..., SqliteStore],
        caplog: pytest.LogCaptureFixture) -> None:
    data = base / "data"
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    (data / "state.db").touch(mode=0o644)
    (data / "state.db").chmod(0o644)
    with caplog.at_level(logging.WARNING):
        open_at(data / "state.db")
    lines = [r.getMessage() for r in caplog.records if "files_readable_by_others" in
             r.getMessage()]
    assert len(lines) == 1
    assert f"{data}=0755" in lines[0] and f"{data / 'state.db'}=0644" in lines[0]
    assert mode(data / "state.db") == 0o644  # the operator's choice is left alone


async def test_a_private_store_opens_without_a_warning(
        tmp_path: Path, open_at: Callable[..., SqliteStore],
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        open_at(tmp_path / "data" / "state.db")
        open_at(tmp_path / "data" / "state.db")
    assert not [r for r in caplog.records if "files_readable_by_others" in r.getMessage()]


@pytest.mark.parametrize("how", ["removed", "replaced"])
async def test_a_store_whose_file_is_removed_or_replaced_refuses_every_call(
        tmp_path: Path, open_at: Callable[..., SqliteStore], how: str) -> None:
    path = tmp_path / "state.db"
    store = open_at(path)
    await store.put("jobs/a", b"1")
    for name in ("state.db", "state.db-wal", "state.db-shm"):
        (tmp_path / name).unlink()
    if how == "replaced":
        open_at(path)  # another process makes a fresh store at the path
    with pytest.raises(StoreReplaced, match=how):
        await store.put("jobs/b", b"2")
    with pytest.raises(StoreReplaced, match=how):
        await store.get("jobs/a")  # reads too, and from now on without asking the file
    assert how in await store.wait_fault()


async def test_an_idle_watching_store_notices_its_file_removed_within_a_poll(
        tmp_path: Path, open_at: Callable[..., SqliteStore]) -> None:
    path = tmp_path / "state.db"
    store = open_at(path)
    watch = store.watch("", await store.revision() + 1)
    waiting = asyncio.ensure_future(watch.__anext__())
    await eventually(lambda: store._poller is not None, 5, "the poller to start")
    path.unlink()
    assert "removed" in await eventually(lambda: store.fault, 5, "the fault to be seen")
    waiting.cancel()
    await watch.aclose()


def copy_of(path: Path, to: Path) -> None:
    """A consistent copy of a live store (SQLite's backup API), as an operator makes."""
    with sqlite3.connect(path) as source, sqlite3.connect(to) as target:
        source.backup(target)
    source.close()
    target.close()


async def test_an_older_copy_put_back_is_recorded_as_restored(
        tmp_path: Path, opened: list[SqliteStore]) -> None:
    path = tmp_path / "state.db"
    store = SqliteStore(path)
    identity = await store_identity(store)
    await store.put("cursors/a", b"old")
    copy_of(path, tmp_path / "copy.db")
    for n in range(5):
        await store.put("cursors/a", f"new {n}".encode())
    seen = await store.revision()
    await store.close()
    assert HighWater(path).get(identity) == seen
    for name in ("state.db", "state.db-wal", "state.db-shm"):
        (tmp_path / name).unlink(missing_ok=True)
    shutil.copy(tmp_path / "copy.db", path)

    again = SqliteStore(path)
    opened.append(again)
    marker = await again.get(RESTORED)
    assert marker is not None
    body = json.loads(marker.value)
    assert body["cause"] == "file" and body["seen_revision"] == seen
    assert body["revision"] < seen and body["at"].endswith("Z")
    assert (await again.get(IDENTITY)) is not None
    # The mark follows the restored store now: opening it again records nothing more.
    revision = await again.revision()
    third = SqliteStore(path)
    opened.append(third)
    assert await third.revision() == revision


async def test_a_fresh_store_at_the_path_of_another_is_not_taken_for_a_restore(
        tmp_path: Path, opened: list[SqliteStore]) -> None:
    path = tmp_path / "state.db"
    store = SqliteStore(path)
    await store_identity(store)
    for n in range(5):
        await store.put("cursors/a", f"{n}".encode())
    await store.close()
    for name in ("state.db", "state.db-wal", "state.db-shm"):
        (tmp_path / name).unlink(missing_ok=True)
    fresh = SqliteStore(path)
    opened.append(fresh)
    assert await fresh.get(RESTORED) is None
    assert await store_identity(fresh) != ""


async def test_a_file_written_back_in_place_under_an_open_store_is_refused(
        tmp_path: Path, open_at: Callable[..., SqliteStore]) -> None:
    path = tmp_path / "state.db"
    store = open_at(path)
    await store.put("cursors/a", b"old")
    copy_of(path, tmp_path / "copy.db")
    for n in range(3):
        await store.put("cursors/a", f"new {n}".encode())
    # Another process writes the old copy's pages into the same inode.
    with sqlite3.connect(tmp_path / "copy.db") as source, sqlite3.connect(path) as target:
        source.backup(target)
    source.close()
    target.close()
    with pytest.raises(StoreReplaced, match="went back"):
        await store.get("cursors/a")


async def test_the_identity_is_made_once_and_kept(
        tmp_path: Path, open_at: Callable[..., SqliteStore]) -> None:
    one = open_at(tmp_path / "state.db")
    two = open_at(tmp_path / "state.db")
    first = await store_identity(one)
    assert await store_identity(two) == first == await store_identity(one)
    assert len(first) == 36  # a UUID
