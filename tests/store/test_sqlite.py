"""What only the SQLite backend does: several OS processes on one file, its URL,
its lease clock, durability across reopening, and its failures."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from pathlib import Path
from typing import Any

import pytest

from distcron.errors import Compacted, ConfigError, LeaseExpired, StoreError, StoreUnavailable
from distcron.store import Event, KeyValue, open_store, sqlite_poll
from distcron.store import sqlite as sqlite_backend
from distcron.store.sqlite import SqliteStore, SqliteUrl, parse_sqlite_url
from tests.store.helpers import collect

pytestmark = pytest.mark.anyio

HELPER = Path(__file__).with_name("proc_helper.py")


class FakeMonotonic:
    """A lease clock that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state.db"


@pytest.fixture
async def opened() -> AsyncIterator[list[SqliteStore]]:
    """Stores a test opens and wants closed at its end."""
    stores: list[SqliteStore] = []
    yield stores
    for store in stores:
        await store.close()


@pytest.fixture
def open_at(path: Path, opened: list[SqliteStore]) -> Callable[..., SqliteStore]:
    def open_store_at(**options: Any) -> SqliteStore:
        store = SqliteStore(path, poll_interval=0.02, **options)
        opened.append(store)
        return store

    return open_store_at


# -- URLs ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///distcron-data/state.db", SqliteUrl(Path("distcron-data/state.db"))),
        ("sqlite:////var/lib/distcron/state.db", SqliteUrl(Path("/var/lib/distcron/state.db"))),
        ("sqlite:///my%20data/s.db", SqliteUrl(Path("my data/s.db"))),
        (
            "sqlite:///s.db?poll=10ms&history=500&busy_timeout=2s",
            SqliteUrl(Path("s.db"), poll_interval=0.01, history=500, busy_timeout=2.0),
        ),
        ("sqlite:///s.db?poll=0.2", SqliteUrl(Path("s.db"), poll_interval=0.2)),
    ],
)
def test_a_sqlite_url_names_a_path_relative_unless_it_has_four_slashes(
    url: str, expected: SqliteUrl
) -> None:
    assert parse_sqlite_url(url) == expected


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("sqlite://host/state.db", "no host"),
        ("sqlite:state.db", "no host"),
        ("sqlite:///", "no file name"),
        ("sqlite:///data/", "no file name"),
        ("sqlite:///s.db#x", "%23"),
        ("sqlite:///s.db?poll=fast", "bad duration"),
        ("sqlite:///s.db?history=lots", "invalid literal"),
        ("sqlite:///s.db?history=0", "must be positive"),
        ("sqlite:///s.db?colour=red", "unknown option(s) colour"),
        ("sqlite:///s.db?poll=1s&poll=2s", "given twice"),
    ],
)
def test_a_bad_sqlite_url_is_a_config_error_that_says_why(url: str, complaint: str) -> None:
    with pytest.raises(ConfigError, match=repr(url).replace("?", r"\?")) as raised:
        parse_sqlite_url(url)
    assert complaint in str(raised.value)


async def test_the_default_url_opens_a_store_under_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = open_store("sqlite:///distcron-data/state.db?poll=20ms")
    try:
        assert isinstance(store, SqliteStore)
        assert store.path == tmp_path / "distcron-data" / "state.db"
        await store.put("k", b"v")
    finally:
        await store.close()
    assert (tmp_path / "distcron-data" / "state.db").is_file()


# -- opening ---------------------------------------------------------------------------


async def test_a_path_in_missing_directories_creates_them(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "c" / "state.db"
    store = SqliteStore(path)
    await store.close()
    assert path.is_file()


def test_an_unusable_location_raises_store_unavailable_naming_it(tmp_path: Path) -> None:
    (tmp_path / "plain-file").write_text("not a directory")
    with pytest.raises(StoreUnavailable, match="cannot create directory") as raised:
        SqliteStore(tmp_path / "plain-file" / "state.db")
    assert str(tmp_path / "plain-file" / "state.db") in str(raised.value)
    (tmp_path / "a-directory.db").mkdir()
    with pytest.raises(StoreUnavailable, match="unable to open") as raised:
        SqliteStore(tmp_path / "a-directory.db")
    assert str(tmp_path / "a-directory.db") in str(raised.value)


def test_a_file_that_is_not_a_store_is_refused(path: Path) -> None:
    path.write_bytes(b"this is no database, just some bytes " * 100)
    with pytest.raises(StoreError, match=str(path)):
        SqliteStore(path)


def test_a_store_from_a_newer_distcron_is_refused(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version=99")
    with pytest.raises(StoreError, match="schema version 99"):
        SqliteStore(path)


# -- durability ------------------------------------------------------------------------


async def test_everything_survives_closing_and_reopening(path: Path) -> None:
    clock = FakeMonotonic()
    store = SqliteStore(path, monotonic=clock, boot_id="boot-1")
    lease = await store.lease_grant(10)
    await store.put("plain", b"1")
    leased_at = await store.put("leased", b"2", lease=lease)
    await store.close()

    store = SqliteStore(path, monotonic=clock, boot_id="boot-1")
    try:
        assert await store.revision() == leased_at
        assert await store.get("leased") == KeyValue("leased", b"2", leased_at, leased_at, 1, lease)
        async with aclosing(store.watch("", 1)) as watch:
            assert [e.kv.key for e in await collect(watch, 2)] == ["plain", "leased"]
        clock.now += 10
        assert await store.get("leased") is None
        assert await store.get("plain") is not None
    finally:
        await store.close()


async def test_a_reboot_ends_the_leases_of_the_previous_boot(path: Path) -> None:
    before = SqliteStore(path, monotonic=FakeMonotonic(), boot_id="boot-1")
    lease = await before.lease_grant(3600)
    await before.put("plain", b"1")
    leased_at = await before.put("leased", b"2", lease=lease)
    await before.close()

    # After a reboot the monotonic clock starts again near zero.
    after = SqliteStore(path, monotonic=lambda: 5.0, boot_id="boot-2")
    try:
        assert await after.get("leased") is None
        assert await after.get("plain") is not None
        async with aclosing(after.watch("leased", leased_at + 1)) as watch:
            assert await collect(watch, 1) == [
                Event("delete", KeyValue("leased", b"", 0, leased_at + 1, 0, 0))
            ]
        with pytest.raises(LeaseExpired):
            await after.lease_keepalive(lease)
    finally:
        await after.close()


# -- the lease clock -------------------------------------------------------------------


async def test_a_lease_ends_exactly_at_its_monotonic_deadline(
    open_at: Callable[..., SqliteStore],
) -> None:
    clock = FakeMonotonic()
    store = open_at(monotonic=clock)
    lease = await store.lease_grant(10)
    await store.put("k", b"v", lease=lease)
    clock.now += 9.999
    assert await store.get("k") is not None
    assert await store.lease_keepalive(lease) == 10
    clock.now += 9.999
    assert await store.get("k") is not None
    clock.now += 0.001
    assert await store.get("k") is None
    with pytest.raises(LeaseExpired):
        await store.lease_keepalive(lease)


async def test_keepalive_after_the_deadline_raises_even_before_anyone_reaped(
    open_at: Callable[..., SqliteStore],
) -> None:
    clock = FakeMonotonic()
    store = open_at(monotonic=clock)
    lease = await store.lease_grant(5)
    revision = await store.put("k", b"v", lease=lease)
    clock.now += 5
    with pytest.raises(LeaseExpired):
        await store.lease_keepalive(lease)
    # The keepalive that found the lease gone also deleted its key, as a revision.
    assert await store.revision() == revision + 1


async def test_a_watch_alone_notices_an_expired_lease(
    open_at: Callable[..., SqliteStore],
) -> None:
    clock = FakeMonotonic()
    holder, watcher = open_at(monotonic=clock), open_at(monotonic=clock)
    lease = await holder.lease_grant(5)
    revision = await holder.put("election/leader", b"r1", lease=lease)
    await holder.close()
    async with aclosing(watcher.watch("election/", revision + 1)) as watch:
        clock.now += 5
        (event,) = await collect(watch, 1)
    assert event == Event("delete", KeyValue("election/leader", b"", 0, revision + 1, 0, 0))


def test_a_quiet_store_is_polled_less_often() -> None:
    fast, quiet = 0.05, sqlite_poll.QUIET_AFTER
    assert sqlite_poll.poll_interval(fast, 0.0) == fast
    assert sqlite_poll.poll_interval(fast, quiet - 0.01) == fast
    assert sqlite_poll.poll_interval(fast, quiet) == fast * sqlite_poll.QUIET_FACTOR


async def test_a_change_after_a_quiet_spell_still_reaches_a_watch_in_another_store(
    open_at: Callable[..., SqliteStore], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sqlite_poll, "QUIET_AFTER", 0.1)
    writer, watcher = open_at(), open_at()
    revision = await writer.put("a", b"1")
    async with aclosing(watcher.watch("b", revision + 1)) as watch:
        await asyncio.sleep(0.5)  # the quiet spell itself: the poller has slowed down
        await writer.put("b", b"2")
        (event,) = await collect(watch, 1)
        await writer.put("b", b"3")  # and the next change, polled fast again
        (again,) = await collect(watch, 1)
    assert (event.kv.value, again.kv.value) == (b"2", b"3")


async def test_leases_expired_together_are_reaped_in_one_revision(
    open_at: Callable[..., SqliteStore],
) -> None:
    clock = FakeMonotonic()
    store = open_at(monotonic=clock)
    leases = [await store.lease_grant(ttl) for ttl in (1, 2, 3)]
    for i, lease in enumerate(leases):
        await store.put(f"k{i}", b"", lease=lease)
    revision = await store.put("stays", b"")
    clock.now += 2.5
    found, read_at = await store.range("k")
    assert [kv.key for kv in found] == ["k2"]
    assert read_at == revision + 1


# -- history ---------------------------------------------------------------------------


async def test_history_is_compacted_to_the_configured_bound(
    open_at: Callable[..., SqliteStore],
) -> None:
    store = open_at(history=20)
    for i in range(100):
        await store.put("k", str(i).encode())
    revision = await store.revision()
    with pytest.raises(Compacted) as raised:
        async with aclosing(store.watch("", 1)) as watch:
            await anext(watch)
    # At least ``history`` revisions are kept, and at most a tenth more.
    assert revision - 22 < raised.value.oldest <= revision - 19
    async with aclosing(store.watch("", revision - 19)) as watch:
        assert len(await collect(watch, 20)) == 20


async def test_a_watch_that_falls_behind_the_history_raises_compacted(
    open_at: Callable[..., SqliteStore],
) -> None:
    store = open_at(history=5)
    start = await store.revision() + 1
    for i in range(3):
        await store.put("k", str(i).encode())
    async with aclosing(store.watch("", start)) as watch:
        assert len(await collect(watch, 3)) == 3
        for i in range(30):
            await store.put("k", str(i).encode())
        with pytest.raises(Compacted) as raised:
            await anext(watch)
    assert raised.value.requested == start + 3


async def test_a_long_replay_comes_in_pages_without_gaps(
    open_at: Callable[..., SqliteStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_backend, "WATCH_PAGE_REVISIONS", 3)
    store = open_at()
    for i in range(20):
        await store.put(f"p/{i % 2}", str(i).encode())
        await store.put("other", b"")
    async with aclosing(store.watch("p/", 1)) as watch:
        events = await collect(watch, 20)
    assert [e.kv.value for e in events] == [str(i).encode() for i in range(20)]


# -- failures --------------------------------------------------------------------------


async def test_a_write_lock_held_past_the_busy_timeout_raises_store_unavailable(
    path: Path, open_at: Callable[..., SqliteStore]
) -> None:
    store = open_at(busy_timeout=0.1)
    await store.put("k", b"1")
    blocker = sqlite3.connect(path, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreUnavailable, match="busy timeout") as raised:
            await store.put("k", b"2")
        assert str(path) in str(raised.value)
        kv = await store.get("k")  # readers never wait for the writer
        assert kv is not None
        assert kv.value == b"1"
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    # Nothing was left open: the next write goes through.
    await store.put("k", b"3")
    kv = await store.get("k")
    assert kv is not None
    assert (kv.value, kv.version) == (b"3", 2)


# -- several processes -------------------------------------------------------------------


async def start_helper(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, str(HELPER), *args,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )


async def read_line(proc: asyncio.subprocess.Process) -> str:
    """The helper's next line; its startup is slow on a busy machine, hence 20 s."""
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 20)
    assert line, f"helper exited with {await proc.wait()}"
    return line.decode().strip()


async def test_processes_racing_to_create_keys_win_each_exactly_once(
    path: Path, open_at: Callable[..., SqliteStore]
) -> None:
    keys, names = 40, ["p0", "p1", "p2", "p3"]
    store = open_at()
    start = await store.revision()
    procs = [await start_helper("race", str(path), str(keys), name) for name in names]
    try:
        for proc in procs:
            assert await read_line(proc) == "ready"
        for proc in procs:  # all at once, now that every one has the file open
            assert proc.stdin is not None
            proc.stdin.write(b"go\n")
            await proc.stdin.drain()
        won = {
            name: json.loads(await read_line(proc))
            for name, proc in zip(names, procs, strict=True)
        }
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
            await proc.wait()
    assert sorted(k for keys_won in won.values() for k in keys_won) == sorted(
        f"race/{i}" for i in range(keys)
    )
    for name, keys_won in won.items():
        for key in keys_won:
            kv = await store.get(key)
            assert kv is not None
            assert (kv.value, kv.version) == (name.encode(), 1)
    assert await store.revision() == start + keys, "each losing txn must write nothing"


async def test_a_killed_process_leased_key_vanishes_for_the_others_after_the_ttl(
    path: Path, open_at: Callable[..., SqliteStore]
) -> None:
    ttl = 0.5
    follower = open_at()
    holder = await start_helper("hold", str(path), str(ttl))
    try:
        word, granted = (await read_line(holder)).split()
        assert word == "ready"
        leader = await follower.get("election/leader")
        assert leader is not None
        async with aclosing(follower.watch("election/", leader.mod_revision + 1)) as watch:
            holder.send_signal(signal.SIGKILL)
            (event,) = await collect(watch, 1, timeout=ttl + 10)
        seen = time.monotonic()
    finally:
        if holder.returncode is None:
            holder.kill()
        await holder.wait()
    assert (event.type, event.kv.key) == ("delete", "election/leader")
    assert seen >= float(granted) + ttl, "the key must not vanish before the TTL"
    assert await follower.get("election/leader") is None
