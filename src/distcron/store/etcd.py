"""The ``etcd`` store backend: the store in an etcd v3 cluster (3.4 or later).

URL: ``etcd://[USER:PASSWORD@]HOST:PORT[,HOST:PORT…][/PREFIX][?timeout=2s]``,
``etcds://`` with ``cacert``/``cert``/``key`` for TLS (see
:mod:`distcron.store.etcd_url`). Keys are stored under ``PREFIX/``; ranges and
watches see nothing else. Requests go through etcd's JSON gateway
(:mod:`distcron.store.etcd_client` says why), every read is linearizable.

Failure behaviour:

- **Endpoint down, paused or cut off.** A request that fails on one endpoint
  moves to the next; each may take ``timeout`` (2 s by default). Reads and
  requests that may safely be repeated (lease grants, keepalives, revokes,
  compactions, read-only transactions) are sent again there; a write that may
  have reached the failed endpoint is not: it raises
  :class:`~distcron.errors.StoreUnavailable`, and it **may have been applied**
  — callers read back (a guarded create is checked with a read, never sent
  twice). When every endpoint failed, every call raises StoreUnavailable.
- **Leases.** etcd counts TTLs in whole seconds on its leader's monotonic
  clock: a TTL is rounded up, and etcd raises one below its minimum (1.5
  election timeouts, rounded up: 2 s with etcd's defaults) to that minimum, so
  a lease may outlive the TTL asked for, never the other way round. A new
  leader gives every lease a full TTL again, so a leader change does not end
  leases that are kept alive. ``lease_keepalive`` raises
  :class:`~distcron.errors.LeaseExpired` when etcd says the lease is gone; a
  keepalive that raised StoreUnavailable may be tried again on the next
  endpoint (the caller's keepalive loop does, within its TTL). A keepalive
  gives each endpoint a quarter of the lease's TTL at most (when shorter than
  the URL's timeout), so that it fails over from a member cut off from the
  network well within the TTL.
- **Watches** move to another endpoint without gaps or repeats when theirs
  fails (see :mod:`distcron.store.etcd_watch`).
- **Transactions** hold at most ``max_txn_ops`` operations per branch and
  comparisons (etcd's ``--max-txn-ops``, 128 unless the cluster and the URL
  say more): a larger one raises ValueError before it is sent, as does one the
  cluster refuses as too large.
- **Closing** ends open watches; later calls raise StoreUnavailable. Leases are
  not revoked: they expire.

One store instance belongs to one event loop.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncGenerator, Callable, Sequence

from distcron.errors import LeaseExpired, StoreUnavailable
from distcron.store.base import (
    Compare,
    Get,
    KeyValue,
    Op,
    Put,
    Store,
    StoreMember,
    TxnResult,
    WatchBatch,
)
from distcron.store.etcd_client import (
    DEFAULT_TOKEN_REFRESH,
    EtcdServerError,
    GatewayClient,
    Json,
)
from distcron.store.etcd_codec import KeyCodec, revision_of
from distcron.store.etcd_url import EtcdUrl, parse_etcd_url
from distcron.store.etcd_watch import DEFAULT_RECONNECT_WINDOW, EtcdWatch

# Shared with the SQLite backend: the same refusals, worded the same.
from distcron.store.txn_rules import check_txn

# gRPC status codes in etcd's answers.
_INVALID_ARGUMENT = 3
_NOT_FOUND = 5
_OUT_OF_RANGE = 11
_LEASE_NOT_FOUND = "etcdserver: requested lease not found"
_COMPACTED = "etcdserver: mvcc: required revision has been compacted"


class EtcdStore(Store):
    """The store in the etcd cluster ``url`` names (see the module docstring).

    Opening does no I/O: an unreachable cluster shows at the first call.
    ``token_refresh`` is how old an authentication token may get before it is
    renewed, on the clock ``monotonic`` (tests may pass a fake one);
    ``reconnect_window`` how long a watch looks for an endpoint
    before it raises StoreUnavailable.
    """

    def __init__(
        self,
        url: EtcdUrl,
        *,
        token_refresh: float = DEFAULT_TOKEN_REFRESH,
        reconnect_window: float = DEFAULT_RECONNECT_WINDOW,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.max_txn_ops = url.max_txn_ops
        self._client = GatewayClient(url, token_refresh=token_refresh, monotonic=monotonic)
        self._codec = KeyCodec(url.prefix)
        self._reconnect_window = reconnect_window
        self._watches: set[EtcdWatch] = set()
        self._closed = False
        self._ttls: dict[int, float] = {}  # of the leases granted here

    def __repr__(self) -> str:
        user = f"{self.url.username}:***@" if self.url.username else ""
        hosts = ",".join(str(e) for e in self.url.endpoints)
        scheme = "etcds" if self.url.tls else "etcd"
        return f"EtcdStore('{scheme}://{user}{hosts}/{self.url.prefix}')"

    async def get(self, key: str) -> KeyValue | None:
        if not key:
            raise ValueError("empty key (only a prefix may be empty)")
        answer = await self._call("/v3/kv/range", self._codec.select(key, False), retry=True)
        found = self._codec.kvs(answer)
        return found[0] if found else None

    async def range(self, prefix: str) -> tuple[list[KeyValue], int]:
        answer = await self._call("/v3/kv/range", self._codec.select(prefix, True), retry=True)
        return list(self._codec.kvs(answer)), revision_of(answer)

    async def members(self) -> list[StoreMember]:
        """Every member etcd lists, which of them leads raft, and whether each
        answers its status now (asked briefly, at the URLs this store was given)."""
        listed = await self._call("/v3/cluster/member/list", {}, retry=True)
        members = listed.get("members", [])
        statuses = [await self._client.member_status(tuple(m.get("clientURLs", [])))
                    for m in members]
        leaders = {str(status.get("leader")) for status in statuses if status}
        return [StoreMember(m.get("name") or str(m.get("ID")), tuple(m.get("clientURLs", [])),
                            str(m.get("ID")) in leaders, status is not None)
                for m, status in zip(members, statuses, strict=True)]

    async def revision(self) -> int:
        # A linearizable read (unlike a member's status) of a key that need not exist.
        request = {**self._codec.select("", True), "count_only": True}
        return revision_of(await self._call("/v3/kv/range", request, retry=True))

    async def txn(
        self,
        compare: Sequence[Compare],
        success: Sequence[Op],
        failure: Sequence[Op] = (),
    ) -> TxnResult:
        check_txn(compare, success, failure)
        self._check_size(compare, success, failure)
        read_only = all(isinstance(op, Get) for op in (*success, *failure))
        try:
            answer = await self._call(
                "/v3/kv/txn", self._codec.txn(compare, success, failure), retry=read_only
            )
        except EtcdServerError as exc:
            if exc.message == _LEASE_NOT_FOUND:
                raise LeaseExpired(await self._gone_lease(success, failure)) from None
            if exc.code == _INVALID_ARGUMENT:
                raise ValueError(f"etcd refused the transaction: {exc.message}") from None
            raise
        succeeded = bool(answer.get("succeeded"))
        results = self._codec.results(
            success if succeeded else failure, answer.get("responses", ())
        )
        return TxnResult(succeeded, revision_of(answer), results)

    async def lease_grant(self, ttl: float) -> int:
        if not ttl > 0:
            raise ValueError(f"lease TTL must be positive, got {ttl}")
        # Sent again after a failure: a lease granted by an attempt that timed
        # out holds no key, and expires by itself.
        answer = await self._call(
            "/v3/lease/grant", {"TTL": str(max(1, math.ceil(ttl)))}, retry=True
        )
        lease = int(answer["ID"])
        self._ttls[lease] = ttl
        return lease

    async def lease_keepalive(self, lease_id: int) -> float:
        try:
            answer = await self._call(
                "/v3/lease/keepalive", {"ID": str(lease_id)}, retry=True, streaming=True,
                per_endpoint=self._ttls[lease_id] / 4 if lease_id in self._ttls else None,
            )
        except EtcdServerError as exc:
            if exc.code == _NOT_FOUND:
                raise LeaseExpired(lease_id) from None
            raise
        ttl = int(answer.get("TTL", 0))
        if ttl <= 0:
            raise LeaseExpired(lease_id)
        return float(ttl)

    async def lease_revoke(self, lease_id: int) -> None:
        self._ttls.pop(lease_id, None)
        try:
            await self._call("/v3/lease/revoke", {"ID": str(lease_id)}, retry=True)
        except EtcdServerError as exc:
            if exc.code != _NOT_FOUND:
                raise

    async def compact(self, revision: int) -> None:
        """Drop the history up to ``revision`` (below the current revision), as
        :meth:`SqliteStore.compact` does: a watch from ``revision`` or before
        raises Compacted. This is cluster-wide, not limited to the prefix."""
        # etcd keeps the revision it compacts at: compacting at the next one
        # drops ``revision`` itself.
        try:
            await self._call("/v3/kv/compaction", {"revision": str(revision + 1)}, retry=True)
        except EtcdServerError as exc:
            if exc.message == _COMPACTED:
                return
            if exc.code == _OUT_OF_RANGE:
                raise ValueError(f"cannot compact at {revision}: {exc.message}") from None
            raise

    def watch(self, prefix: str, start_revision: int) -> AsyncGenerator[WatchBatch, None]:
        """See :meth:`Store.watch` and :mod:`distcron.store.etcd_watch`."""
        if start_revision < 1:
            raise ValueError(f"watch start revision must be at least 1, got {start_revision}")
        return self._watch(prefix, start_revision)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for watch in self._watches:
            watch.stop()
        await self._client.aclose()

    async def _watch(self, prefix: str, start_revision: int) -> AsyncGenerator[WatchBatch, None]:
        if self._closed:
            raise StoreUnavailable(f"{self!r} is closed")
        watch = EtcdWatch(
            self._client,
            self._codec,
            prefix,
            start_revision,
            reconnect_window=self._reconnect_window,
        )
        self._watches.add(watch)
        try:
            async for batch in watch.batches():
                yield batch
        finally:
            self._watches.discard(watch)

    async def _call(
        self,
        path: str,
        body: Json,
        *,
        retry: bool,
        streaming: bool = False,
        per_endpoint: float | None = None,
    ) -> Json:
        if self._closed:
            raise StoreUnavailable(f"{self!r} is closed")
        return await self._client.call(
            path, body, retry=retry, streaming=streaming, per_endpoint=per_endpoint
        )

    def _check_size(
        self, compare: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op]
    ) -> None:
        limit = self.url.max_txn_ops
        for what, items in (
            ("comparisons", compare),
            ("operations on success", success),
            ("operations on failure", failure),
        ):
            if len(items) > limit:
                raise ValueError(
                    f"transaction has {len(items)} {what}; etcd allows "
                    f"{limit} (its --max-txn-ops; a cluster that allows more says so "
                    "with max_txn_ops in the store URL)"
                )

    async def _gone_lease(self, success: Sequence[Op], failure: Sequence[Op]) -> int:
        """Which lease of a transaction etcd did not find (it does not say)."""
        leases = list(dict.fromkeys(op.lease for op in (*success, *failure) if isinstance(op, Put)))
        leases = [lease for lease in leases if lease] or [0]
        for lease in leases[:-1]:
            answer = await self._call("/v3/lease/timetolive", {"ID": str(lease)}, retry=True)
            if int(answer.get("TTL", -1)) < 0:
                return lease
        return leases[-1]


def open_etcd_store(url: str) -> EtcdStore:
    """The store an ``etcd://`` or ``etcds://`` URL names (see :func:`parse_etcd_url`)."""
    return EtcdStore(parse_etcd_url(url))
