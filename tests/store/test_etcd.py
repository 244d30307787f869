"""What only the etcd backend does: fail over between members, survive their
deaths and pauses, log in, speak TLS, and keep to etcd's limits.

Tests kill and pause members of the session's cluster; the ``etcd_cluster``
fixture makes it whole again after each. Clients that must use a given member
first get a URL listing it first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing
from pathlib import Path

import httpx
import pytest

from distcron.errors import ConfigError, LeaseExpired, StoreError, StoreUnavailable
from distcron.store import Compare, Event, Put, open_store
from distcron.store.etcd import EtcdStore
from distcron.store.etcd_url import parse_etcd_url
from tests.etcd_cluster import (
    EtcdCluster,
    EtcdMember,
    TlsFiles,
    etcd_available,
    free_ports,
    make_certificates,
)
from tests.store.conftest import EtcdHarness
from tests.store.helpers import collect
from tests.waiting import eventually

pytestmark = [pytest.mark.anyio, pytest.mark.cluster]

PASSWORD = "pa55-w0rd-never-shown"


@pytest.fixture
def prefix() -> str:
    return f"test-{uuid.uuid4().hex}"


@pytest.fixture
async def harness(etcd_cluster: EtcdCluster, prefix: str) -> AsyncIterator[EtcdHarness]:
    opened = EtcdHarness(etcd_cluster.url(prefix))
    yield opened
    etcd_cluster.heal()  # before cleaning up, so that no call waits on a paused member
    await opened.close()


def first(cluster: EtcdCluster, prefix: str, member: EtcdMember, query: str = "") -> str:
    """A URL of every member, ``member`` first."""
    order = [member, *(m for m in cluster.members if m is not member)]
    return cluster.url(prefix, order) + query


# -- members -----------------------------------------------------------------------------


async def test_the_store_lists_its_members_with_the_raft_leader_and_who_answers(
    etcd_cluster: EtcdCluster, harness: EtcdHarness, prefix: str
) -> None:
    store = harness.connect(etcd_cluster.url(prefix))
    members = await store.members()
    assert members is not None and len(members) == 3
    assert sum(member.leader for member in members) == 1
    assert all(member.healthy and member.endpoints for member in members)
    paused = etcd_cluster.followers()[0]
    paused.pause()
    try:
        seen = {m.endpoints: m.healthy for m in await store.members()}
        assert [healthy for urls, healthy in seen.items()
                if paused.client_url in urls] == [False], seen
    finally:
        paused.resume()


# -- failover --------------------------------------------------------------------------


async def test_reads_and_writes_go_on_when_the_member_a_client_uses_is_killed(
    etcd_cluster: EtcdCluster, harness: EtcdHarness, prefix: str
) -> None:
    victim = etcd_cluster.followers()[0]
    store = harness.connect(first(etcd_cluster, prefix, victim))
    await store.put("before", b"")
    victim.kill()
    for i in range(10):
        created = await store.txn([Compare.missing(f"k/{i}")], [Put(f"k/{i}", b"v")])
        assert created.succeeded
        assert await store.get(f"k/{i}") is not None
    found, _ = await store.range("k/")
    assert len(found) == 10


async def test_writes_go_on_after_the_leader_is_killed_once_a_new_one_is_elected(
    etcd_cluster: EtcdCluster, harness: EtcdHarness, prefix: str
) -> None:
    leader = etcd_cluster.leader()
    store = harness.connect(first(etcd_cluster, prefix, leader))
    await store.put("before", b"")
    leader.kill()
    killed = time.monotonic()

    async def created() -> bool:
        try:
            result = await store.txn([Compare.missing("after")], [Put("after", b"")])
        except StoreUnavailable:
            return False  # the election is on; the write may have landed: try again
        return result.succeeded or await store.get("after") is not None

    await eventually(created, 10, "a write after the election")
    assert time.monotonic() - killed < 5


async def test_a_paused_member_does_not_hang_reads_past_the_timeout(
    etcd_cluster: EtcdCluster, harness: EtcdHarness, prefix: str
) -> None:
    victim = etcd_cluster.followers()[0]
    store = harness.connect(first(etcd_cluster, prefix, victim, "?timeout=0.5s"))
    await store.put("k", b"v")
    victim.pause()
    began = time.monotonic()
    kv = await store.get("k")
    assert kv is not None and kv.value == b"v"
    assert time.monotonic() - began < 0.5 + 0.5, "one timeout, then another member"
    began = time.monotonic()
    await store.put("k", b"w")  # the paused member is no longer the first one tried
    assert time.monotonic() - began < 0.5


async def test_a_write_to_a_paused_member_fails_in_time_saying_it_may_have_been_applied(
    etcd_cluster: EtcdCluster, harness: EtcdHarness, prefix: str
) -> None:
    victim = etcd_cluster.followers()[0]
    store = harness.connect(first(etcd_cluster, prefix, victim, "?timeout=0.5s"))
    await store.put("k", b"1")
    victim.pause()
    began = time.monotonic()
    with pytest.raises(StoreUnavailable, match="may have been applied"):
        await store.put("k", b"2")
    assert time.monotonic() - began < 0.5 + 0.5
    kv = await store.get("k")
    assert kv is not None and kv.value in (b"1", b"2")


async def test_a_store_with_no_reachable_endpoint_raises_store_unavailable(prefix: str) -> None:
    ports = free_ports(2)
    store = EtcdStore(
        parse_etcd_url(f"etcd://127.0.0.1:{ports[0]},127.0.0.1:{ports[1]}/{prefix}"),
        reconnect_window=0.3,
    )
    try:
        with pytest.raises(StoreUnavailable, match="no endpoint answered"):
            await store.get("k")
        with pytest.raises(StoreUnavailable):
            await store.put("k", b"")
        with pytest.raises(StoreUnavailable):
            async with aclosing(store.watch("", 1)) as watch:
                await anext(watch)
    finally:
        await store.close()


# -- watches -------------------------------------------------------------------------


async def watch_through_a_failure(
    cluster: EtcdCluster, harness: EtcdHarness, prefix: str, fail: str, query: str = ""
) -> list[Event]:
    """60 writes through other members while a watch on ``victim`` sees them,
    ``victim`` failing (``kill`` or ``pause``) after 20 have arrived."""
    victim = cluster.followers()[0]
    watcher = harness.connect(first(cluster, prefix, victim, query))
    others = [m for m in cluster.members if m is not victim]
    writer = harness.connect(cluster.url(prefix, [*others, victim]))
    start = await writer.revision() + 1

    async def write() -> None:
        for i in range(60):
            await writer.put(f"w/{i % 4}", str(i).encode())
            await asyncio.sleep(0.01)  # spread the writes over the failure

    async with aclosing(watcher.watch("w/", start)) as watch:
        writing = asyncio.create_task(write())
        events = await collect(watch, 20)
        getattr(victim, fail)()
        events += await collect(watch, 40, timeout=15)
        await writing
    return events


def assert_in_order_without_gaps(events: list[Event]) -> None:
    assert [e.kv.value for e in events] == [str(i).encode() for i in range(60)]
    revisions = [e.kv.mod_revision for e in events]
    assert revisions == sorted(set(revisions))


async def test_a_watch_moves_to_another_member_without_gaps_when_its_member_dies(
    etcd_cluster: EtcdCluster, harness: EtcdHarness, prefix: str
) -> None:
    events = await watch_through_a_failure(etcd_cluster, harness, prefix, "kill")
    assert_in_order_without_gaps(events)


async def test_a_watch_moves_to_another_member_without_gaps_when_its_member_hangs(
    etcd_cluster: EtcdCluster, harness: EtcdHarness, prefix: str
) -> None:
    events = await watch_through_a_failure(etcd_cluster, harness, prefix, "pause", "?timeout=0.3s")
    assert_in_order_without_gaps(events)


# -- leases ----------------------------------------------------------------------------


async def test_a_kept_alive_lease_survives_a_leader_change(
    etcd_cluster: EtcdCluster, harness: EtcdHarness, prefix: str
) -> None:
    leader = etcd_cluster.leader()
    store = harness.connect(first(etcd_cluster, prefix, leader, "?timeout=0.5s"))
    ttl = 2.0
    lease = await store.lease_grant(ttl)
    created = await store.put("election/leader", b"r1", lease=lease)
    leader.kill()
    until = time.monotonic() + 2 * ttl
    while time.monotonic() < until:
        # During the election a keepalive may fail: a keeper tries again within its TTL.
        with contextlib.suppress(StoreUnavailable):
            await store.lease_keepalive(lease)
        await asyncio.sleep(ttl / 5)  # the keepalive cadence, not a wait for a result
    assert etcd_cluster.leader() is not leader
    kv = await store.get("election/leader")
    assert kv is not None and (kv.create_revision, kv.lease) == (created, lease)


async def test_lease_ttls_are_whole_seconds_rounded_up(harness: EtcdHarness) -> None:
    store = harness.connect()
    short = await store.lease_grant(0.2)
    assert await store.lease_keepalive(short) == 1.0
    longer = await store.lease_grant(1.5)
    assert await store.lease_keepalive(longer) == 2.0
    for lease in (short, longer):
        await store.lease_revoke(lease)
    with pytest.raises(LeaseExpired):
        await store.lease_keepalive(short)


async def test_a_put_with_a_gone_lease_names_that_lease(harness: EtcdHarness) -> None:
    store = harness.connect()
    alive, gone = await store.lease_grant(60), await store.lease_grant(60)
    await store.lease_revoke(gone)
    with pytest.raises(LeaseExpired) as raised:
        await store.txn([], [Put("a", b"", lease=alive), Put("b", b"", lease=gone)])
    assert raised.value.lease_id == gone
    await store.lease_revoke(alive)


# -- limits ----------------------------------------------------------------------------


async def test_a_txn_above_max_txn_ops_is_refused_before_it_is_sent(
    harness: EtcdHarness,
) -> None:
    store = harness.connect()
    before = await store.revision()
    with pytest.raises(ValueError, match="129 operations on success; etcd allows 128"):
        await store.txn([], [Put(f"k/{i}", b"") for i in range(129)])
    assert await store.revision() == before
    done = await store.txn([], [Put(f"k/{i}", b"") for i in range(128)])
    assert done.succeeded


async def test_a_txn_the_cluster_finds_too_large_raises_value_error(
    etcd_cluster: EtcdCluster, harness: EtcdHarness, prefix: str
) -> None:
    store = harness.connect(etcd_cluster.url(prefix) + "?max_txn_ops=1000")
    with pytest.raises(ValueError, match="too many operations"):
        await store.txn([], [Put(f"k/{i}", b"") for i in range(200)])
    assert await store.get("k/0") is None


async def test_keys_outside_the_prefix_are_invisible(
    etcd_cluster: EtcdCluster, harness: EtcdHarness, prefix: str
) -> None:
    inside = harness.connect()
    outside = harness.connect(etcd_cluster.url(prefix + "-sibling"))
    try:
        await outside.put("k", b"sibling")
        start = await inside.revision() + 1
        await inside.put("k", b"mine")
        await outside.put("k2", b"sibling")
        assert [kv.value for kv in (await inside.range(""))[0]] == [b"mine"]
        async with aclosing(inside.watch("", start)) as watch:
            await inside.put("k3", b"mine")
            events = await collect(watch, 2)
        assert [e.kv.key for e in events] == ["k", "k3"]
    finally:
        await outside.delete("", prefix=True)


# -- authentication --------------------------------------------------------------------


@pytest.fixture(scope="module")
def auth_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    """One member with authentication on."""
    if not etcd_available():
        pytest.skip("no etcd")
    cluster = EtcdCluster(tmp_path_factory.mktemp("etcd-auth"), 1)
    cluster.start()
    try:
        with httpx.Client(trust_env=False, timeout=5) as http:
            for path, body in (
                ("/v3/auth/user/add", {"name": "root", "password": PASSWORD}),
                ("/v3/auth/user/grant", {"user": "root", "role": "root"}),
                ("/v3/auth/enable", {}),
            ):
                http.post(cluster.members[0].client_url + path, json=body).raise_for_status()
        yield cluster
    finally:
        cluster.stop()


def auth_url(cluster: EtcdCluster, password: str = PASSWORD, query: str = "") -> str:
    return f"etcd://root:{password}@{cluster.endpoints}/auth-{uuid.uuid4().hex}{query}"


@pytest.fixture
async def opened() -> AsyncIterator[list[EtcdStore]]:
    stores: list[EtcdStore] = []
    yield stores
    for store in stores:
        await store.close()


async def test_a_user_with_a_password_logs_in_and_the_password_is_never_shown(
    auth_cluster: EtcdCluster, opened: list[EtcdStore], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    # A dead endpoint first, so that failing over is logged too.
    (dead,) = free_ports(1)
    url = auth_url(auth_cluster).replace("@", f"@127.0.0.1:{dead},", 1)
    store = EtcdStore(parse_etcd_url(url))
    opened.append(store)
    await store.put("k", b"v")
    kv = await store.get("k")
    assert kv is not None and kv.value == b"v"
    assert "etcd endpoint" in caplog.text, "the failover is logged"
    assert PASSWORD not in caplog.text
    assert PASSWORD not in repr(store) and "root:***@" in repr(store)
    assert PASSWORD not in repr(store.url)


async def test_a_wrong_password_raises_a_store_error_naming_the_user_only(
    auth_cluster: EtcdCluster, opened: list[EtcdStore]
) -> None:
    store = EtcdStore(parse_etcd_url(auth_url(auth_cluster, "wrong-" + PASSWORD)))
    opened.append(store)
    with pytest.raises(StoreError) as raised:
        await store.get("k")
    assert not isinstance(raised.value, StoreUnavailable)
    assert "'root'" in str(raised.value) and PASSWORD not in str(raised.value)


async def test_a_store_without_credentials_is_told_that_etcd_requires_them(
    auth_cluster: EtcdCluster, opened: list[EtcdStore]
) -> None:
    store = EtcdStore(parse_etcd_url(auth_cluster.url("anonymous")))
    opened.append(store)
    with pytest.raises(StoreError, match="requires authentication: give USER:PASSWORD@"):
        await store.get("k")


def forget_tokens(cluster: EtcdCluster) -> None:
    """Make etcd forget every token it gave out: changing a user's password
    (here to the same one) invalidates that user's tokens."""
    with httpx.Client(trust_env=False, timeout=5) as http:
        base = cluster.members[0].client_url
        login = {"name": "root", "password": PASSWORD}
        token = http.post(base + "/v3/auth/authenticate", json=login).json()["token"]
        http.post(
            base + "/v3/auth/user/changepw", json=login, headers={"Authorization": token}
        ).raise_for_status()


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_token_older_than_token_refresh_is_renewed_before_it_is_used(
    auth_cluster: EtcdCluster, opened: list[EtcdStore]
) -> None:
    clock = FakeMonotonic()
    url = parse_etcd_url(auth_url(auth_cluster, query="?timeout=1s"))
    store = EtcdStore(url, token_refresh=60, monotonic=clock)
    opened.append(store)
    await store.put("k", b"v")
    forget_tokens(auth_cluster)
    marks = auth_cluster.log_marks()
    clock.now += 61
    assert await store.get("k") is not None
    assert "invalid auth token" not in auth_cluster.logs_since(marks), "the old token was used"


async def test_a_token_etcd_forgot_early_is_replaced(
    auth_cluster: EtcdCluster, opened: list[EtcdStore]
) -> None:
    store = EtcdStore(parse_etcd_url(auth_url(auth_cluster, query="?timeout=0.5s")))
    opened.append(store)
    await store.put("k", b"v")
    forget_tokens(auth_cluster)
    marks = auth_cluster.log_marks()
    # etcd answers that the token is invalid, and the call logs in again and
    # goes on; some 3.4 releases drop the connection instead: then this call
    # fails, and the next one logs in again.
    with contextlib.suppress(StoreUnavailable):
        await store.get("k")
    assert await store.get("k") is not None
    assert "invalid auth token" in auth_cluster.logs_since(marks), "the old token was tried"


# -- TLS -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EtcdCluster, TlsFiles]]:
    """One member serving clients over TLS, requiring a client certificate."""
    if not etcd_available() or shutil.which("openssl") is None:
        pytest.skip("no etcd or no openssl")
    base = tmp_path_factory.mktemp("etcd-tls")
    files = make_certificates(base / "certs")
    cluster = EtcdCluster(base / "cluster", 1, tls=files)
    cluster.start()
    try:
        yield cluster, files
    finally:
        cluster.stop()


def tls_url(cluster: EtcdCluster, **files: Path) -> str:
    query = "&".join(f"{name}={path}" for name, path in files.items())
    return f"{cluster.url(f'tls-{uuid.uuid4().hex}')}?{query}"


async def test_a_tls_cluster_is_reached_with_its_ca_and_a_client_certificate(
    tls_cluster: tuple[EtcdCluster, TlsFiles], opened: list[EtcdStore]
) -> None:
    cluster, files = tls_cluster
    url = tls_url(cluster, cacert=files.ca, cert=files.client_cert, key=files.client_key)
    assert url.startswith("etcds://")
    store = open_store(url)
    assert isinstance(store, EtcdStore)
    opened.append(store)
    start = await store.revision() + 1
    await store.put("k", b"v")
    async with aclosing(store.watch("", start)) as watch:
        (event,) = await collect(watch, 1)
    assert event.kv.value == b"v"


async def test_a_tls_cluster_refuses_a_client_without_a_certificate(
    tls_cluster: tuple[EtcdCluster, TlsFiles], opened: list[EtcdStore]
) -> None:
    cluster, files = tls_cluster
    store = EtcdStore(parse_etcd_url(tls_url(cluster, cacert=files.ca) + "&timeout=1s"))
    opened.append(store)
    with pytest.raises(StoreUnavailable):
        await store.get("k")
    with pytest.raises(StoreUnavailable):
        await store.put("k", b"v")


async def test_tls_files_that_cannot_be_read_are_a_config_error_naming_them(
    tmp_path: Path,
) -> None:
    missing = tmp_path / "missing-ca.pem"
    with pytest.raises(ConfigError, match=r"missing-ca\.pem"):
        open_store(f"etcds://127.0.0.1:2379/p?cacert={missing}")


async def test_a_watch_cancelled_as_a_change_arrives_ends_with_its_task(
        harness: EtcdHarness) -> None:
    """A replica cancels its watches when it stops, often just as its own last
    writes come back as events: the cancellation must not be lost."""
    store = harness.connect()
    for attempt in range(40):
        key = f"race/{attempt}"

        async def consume(k: str = key) -> None:
            async with aclosing(store.watch(k, await store.revision() + 1)) as watch:
                async for _ in watch:
                    pass

        task = asyncio.create_task(consume())
        await asyncio.sleep(0.05)  # the watch is open
        await store.put(key, b"x")
        # Cancel around the moment the event reaches the watch.
        await asyncio.sleep((attempt % 8) * 0.0005)
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=5)
        assert done, f"attempt {attempt}: the watch went on after its task was cancelled"
