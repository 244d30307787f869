"""A small async client for etcd v3's JSON gateway (``POST /v3/…``), over every
endpoint of a cluster with failover.

Why not a gRPC client: ``aetcd`` (the maintained asyncio one) talks to one
host only, has no TLS and no lease comparisons, and brings grpcio and protobuf;
the gateway is served by every etcd since 3.3 on the client port, needs only
``httpx``, and carries the same requests as JSON (bytes in base64, 64-bit
integers as strings, zero values left out).

Failure behaviour:

- **Endpoint down or slow.** Each request goes to the *current* endpoint and
  may take ``timeout`` seconds. When it cannot be sent (connection refused,
  connect timeout) or etcd refuses it before acting (``no leader`` — every
  request carries etcd's require-leader flag, so a member cut off from its
  leader says so at once instead of hanging —, ``too many requests``), the next
  endpoint becomes current and the request goes there. When the request may
  have arrived (no answer in time, connection dropped, ``request timed out``),
  the next endpoint becomes current as well, but only requests marked
  ``retry`` (reads, and writes that mean the same when applied twice) are sent
  again; any other raises :class:`~distcron.errors.StoreUnavailable` saying
  that it may have been applied — the caller reads back, never blindly
  retries. A call therefore takes at most ``timeout`` × endpoints, and raises
  StoreUnavailable when every endpoint failed once.
- **A failed endpoint is left by every stream on it**: watches register with
  :meth:`GatewayClient.on_failure` and are told when any request finds their
  endpoint failed, so that a watch on a member cut off from the network
  moves at once instead of waiting out its quiet time. A caller may give one
  call a shorter time per endpoint (lease keepalives do, so that a renewal fails
  over within the lease's TTL).
- **Errors etcd answers** (a bad request, a missing lease) are raised as
  :class:`EtcdServerError` with etcd's code and message, for the store to
  translate.
- **Authentication.** With a user and password, the client gets a token from
  each endpoint it uses. A token etcd calls invalid (it forgot it: tokens
  expire after ``--auth-token-ttl``, 300 s by default, unused) is replaced and
  the request sent again. Some etcd 3.4 releases drop the connection instead
  of saying so (etcd issue 15256), which looks like a failed endpoint; so a
  token is also replaced when it is ``token_refresh`` old (60 s), and after
  its endpoint failed. A wrong password raises StoreError naming the user;
  the password is never logged nor put in a message.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx

from distcron.errors import ConfigError, StoreError, StoreUnavailable
from distcron.store.etcd_url import Endpoint, EtcdUrl

log = logging.getLogger(__name__)

Json = dict[str, Any]

# Renewing a token well within etcd's default --auth-token-ttl (300 s).
DEFAULT_TOKEN_REFRESH = 60.0
# gRPC status codes etcd uses for "not now": cancelled, deadline exceeded,
# resource exhausted (too many requests, no space), unavailable.
UNAVAILABLE_CODES = frozenset({1, 4, 8, 14})
# Answers given before a request takes effect: another endpoint may serve it.
_NOT_APPLIED = frozenset({"etcdserver: no leader", "etcdserver: too many requests"})
_INVALID_TOKEN = "etcdserver: invalid auth token"
_NO_USER = "etcdserver: user name is empty"
# etcd's flag (gRPC metadata, passed on by the gateway) asking a member to
# refuse, rather than queue, requests while it has no leader.
_REQUIRE_LEADER = {"Grpc-Metadata-hasleader": "true"}


class EtcdServerError(StoreError):
    """etcd answered a request with an error (a gRPC status)."""

    def __init__(self, endpoint: Endpoint, path: str, code: int, message: str) -> None:
        super().__init__(f"etcd {endpoint} {path}: {message} (gRPC code {code})")
        self.code = code
        self.message = message


class _EndpointFailed(Exception):
    """One endpoint did not serve a request; ``maybe_applied`` when it may have
    arrived and taken effect."""

    def __init__(self, reason: str, *, maybe_applied: bool) -> None:
        super().__init__(reason)
        self.maybe_applied = maybe_applied


class Stream:
    """A streaming answer (a watch), one JSON message at a time."""

    def __init__(self, endpoint: Endpoint, response: httpx.Response) -> None:
        self.endpoint = endpoint
        self._response = response
        self._lines = response.aiter_lines()

    async def next(self) -> Json:
        """The next message's ``result``. Raises EtcdServerError for an error
        message, StoreUnavailable when the stream ends or breaks."""
        try:
            while not (line := await anext(self._lines)).strip():
                pass
        except StopAsyncIteration:
            raise StoreUnavailable(f"etcd {self.endpoint} closed a stream") from None
        except (httpx.HTTPError, ssl.SSLError) as exc:
            raise StoreUnavailable(f"etcd {self.endpoint} stream broke: {exc!r}") from exc
        message = _decode(line.encode(), self.endpoint)
        if "error" in message:
            error = message["error"]
            code = int(error.get("grpc_code", error.get("code", 2)))
            raise EtcdServerError(self.endpoint, "stream", code, str(error.get("message")))
        result: Json = message.get("result", {})
        return result

    async def aclose(self) -> None:
        await self._response.aclose()


class GatewayClient:
    """Requests to the cluster a parsed URL names (see the module docstring)."""

    def __init__(
        self,
        url: EtcdUrl,
        *,
        token_refresh: float = DEFAULT_TOKEN_REFRESH,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.endpoints = url.endpoints
        self.timeout = url.timeout
        self._tls = url.tls
        self._current = 0
        self._username = url.username
        self._password = url.password
        self._token_refresh = token_refresh
        self._monotonic = monotonic
        self._tokens: dict[Endpoint, tuple[str, float]] = {}
        self._auth_locks: dict[Endpoint, asyncio.Lock] = {}
        self._failure_listeners: dict[Endpoint, set[Callable[[str], None]]] = {}
        self._http = httpx.AsyncClient(
            verify=_tls_context(url) if url.tls else False,
            # Proxies from the environment must not stand between us and etcd.
            trust_env=False,
            timeout=httpx.Timeout(url.timeout),
            # Watches hold a connection each: no cap, or they would starve calls.
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=32),
            headers=_REQUIRE_LEADER,
        )

    @property
    def current(self) -> Endpoint:
        return self.endpoints[self._current]

    async def call(self, path: str, body: Json, *, retry: bool, streaming: bool = False,
                   per_endpoint: float | None = None) -> Json:
        """POST ``body`` to ``path`` and return the answer (for a ``streaming``
        request, its first message's ``result``), failing over as the module
        docstring says. ``retry``: the request may be sent again after an
        endpoint that may have applied it failed. ``per_endpoint``: how long
        each endpoint may take, when shorter than the URL's timeout."""
        reasons: list[str] = []
        for _ in self.endpoints:
            endpoint = self.current
            try:
                return await self._attempt(endpoint, path, body, streaming,
                                           min(per_endpoint or self.timeout, self.timeout))
            except _EndpointFailed as failed:
                reasons.append(f"{endpoint}: {failed}")
                self.failed(endpoint, str(failed))
                if failed.maybe_applied and not retry:
                    raise StoreUnavailable(
                        f"etcd {endpoint} {path}: {failed}; the request may have been applied"
                    ) from None
        raise StoreUnavailable(f"etcd {path}: no endpoint answered ({'; '.join(reasons)})")

    async def open_stream(self, path: str, body: Json) -> tuple[Stream, Json]:
        """A stream from the first endpoint that starts one, and its first
        message; StoreUnavailable when none does (each may take ``timeout``)."""
        reasons: list[str] = []
        for _ in self.endpoints:
            endpoint = self.current
            try:
                return await self._open(endpoint, path, body)
            except _EndpointFailed as failed:
                reasons.append(f"{endpoint}: {failed}")
                self.failed(endpoint, str(failed))
        raise StoreUnavailable(f"etcd {path}: no endpoint answered ({'; '.join(reasons)})")

    async def healthy(self, endpoint: Endpoint) -> bool:
        """Whether ``endpoint`` answers within the timeout and has a leader."""
        try:
            status = await self._attempt(endpoint, "/v3/maintenance/status", {}, False,
                                         self.timeout)
        except (_EndpointFailed, StoreError):
            return False
        return int(status.get("leader", 0)) != 0

    async def member_status(self, client_urls: Sequence[str]) -> Json | None:
        """A member's status, asked at whichever of its client URLs this client
        was given (None: none was, or it did not answer within a second)."""
        for endpoint in self.endpoints:
            if any(endpoint.base_url(self._tls) == url.rstrip("/") for url in client_urls):
                with contextlib.suppress(_EndpointFailed, StoreError):
                    return await self._attempt(endpoint, "/v3/maintenance/status", {}, False,
                                               min(1.0, self.timeout))
                return None
        return None

    def on_failure(self, endpoint: Endpoint, listener: Callable[[str], None]) -> Callable[[], None]:
        """Call ``listener`` with the reason when a request finds ``endpoint``
        failed; returns what stops listening."""
        listeners = self._failure_listeners.setdefault(endpoint, set())
        listeners.add(listener)
        return lambda: listeners.discard(listener)

    def failed(self, endpoint: Endpoint, reason: str) -> None:
        """``endpoint`` failed: the next one becomes current (if it still was),
        and the streams on it are told."""
        self._tokens.pop(endpoint, None)  # it may have failed for an expired token
        for listener in list(self._failure_listeners.get(endpoint, ())):
            listener(reason)
        if self.current == endpoint and len(self.endpoints) > 1:
            self._current = (self._current + 1) % len(self.endpoints)
            log.warning("etcd endpoint %s failed (%s); using %s", endpoint, reason, self.current)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _attempt(self, endpoint: Endpoint, path: str, body: Json, streaming: bool,
                       limit: float) -> Json:
        try:
            async with asyncio.timeout(limit):
                headers = await self._auth_headers(endpoint, fresh=False)
                try:
                    return await self._post(endpoint, path, body, headers, streaming)
                except EtcdServerError as exc:
                    if exc.message != _INVALID_TOKEN or not headers:
                        raise
                headers = await self._auth_headers(endpoint, fresh=True)
                return await self._post(endpoint, path, body, headers, streaming)
        except EtcdServerError as exc:
            raise _refusal(exc, endpoint, has_token=self._username is not None) from None
        except StoreUnavailable as exc:  # a stream that ended before its first message
            raise _EndpointFailed(str(exc), maybe_applied=True) from exc
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise _EndpointFailed(f"cannot connect: {exc!r}", maybe_applied=False) from exc
        except httpx.TransportError as exc:
            raise _EndpointFailed(f"connection failed: {exc!r}", maybe_applied=True) from exc
        except ssl.SSLError as exc:
            raise _tls_failure(exc) from exc
        except TimeoutError:
            raise _EndpointFailed(f"no answer in {limit:g}s", maybe_applied=True) from None

    async def _open(self, endpoint: Endpoint, path: str, body: Json) -> tuple[Stream, Json]:
        try:
            async with asyncio.timeout(self.timeout):
                headers = await self._auth_headers(endpoint, fresh=False)
                response = await self._send(endpoint, path, body, headers, stream=True)
                stream = Stream(endpoint, response)
                try:
                    if response.status_code != httpx.codes.OK:
                        await response.aread()
                        raise _error_of(endpoint, path, response)
                    return stream, await stream.next()
                except BaseException:
                    await stream.aclose()
                    raise
        except EtcdServerError as exc:
            raise _refusal(exc, endpoint, has_token=self._username is not None) from None
        except StoreUnavailable as exc:
            raise _EndpointFailed(str(exc), maybe_applied=False) from exc
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise _EndpointFailed(f"cannot connect: {exc!r}", maybe_applied=False) from exc
        except httpx.TransportError as exc:
            raise _EndpointFailed(f"connection failed: {exc!r}", maybe_applied=False) from exc
        except ssl.SSLError as exc:
            raise _tls_failure(exc) from exc
        except TimeoutError:
            raise _EndpointFailed(f"no answer in {self.timeout:g}s", maybe_applied=False) from None

    async def _post(
        self, endpoint: Endpoint, path: str, body: Json, headers: dict[str, str], streaming: bool
    ) -> Json:
        response = await self._send(endpoint, path, body, headers, stream=streaming)
        try:
            if streaming and response.status_code == httpx.codes.OK:
                return await Stream(endpoint, response).next()
            await response.aread()
            if response.status_code != httpx.codes.OK:
                raise _error_of(endpoint, path, response)
            return _decode(response.content, endpoint)
        finally:
            await response.aclose()

    async def _send(
        self, endpoint: Endpoint, path: str, body: Json, headers: dict[str, str], *, stream: bool
    ) -> httpx.Response:
        request = self._http.build_request(
            "POST",
            endpoint.base_url(self._tls) + path,
            content=json.dumps(body).encode(),
            headers=headers,
            # A stream may stay quiet for long: only the first message is timed.
            timeout=httpx.Timeout(self.timeout, read=None) if stream else None,
        )
        return await self._http.send(request, stream=stream)

    async def _auth_headers(self, endpoint: Endpoint, *, fresh: bool) -> dict[str, str]:
        if self._username is None or self._password is None:
            return {}
        lock = self._auth_locks.setdefault(endpoint, asyncio.Lock())
        async with lock:
            token = self._tokens.get(endpoint)
            if fresh or token is None or self._monotonic() - token[1] > self._token_refresh:
                token = (await self._authenticate(endpoint), self._monotonic())
                self._tokens[endpoint] = token
        return {"Authorization": token[0]}

    async def _authenticate(self, endpoint: Endpoint) -> str:
        path = "/v3/auth/authenticate"
        body = {"name": self._username, "password": self._password}
        try:
            answer = await self._post(endpoint, path, body, {}, False)
        except EtcdServerError as exc:
            if exc.code in UNAVAILABLE_CODES:
                raise
            raise StoreError(
                f"etcd {endpoint}: user {self._username!r} could not log in: {exc.message}"
            ) from None
        return str(answer["token"])


def _refusal(exc: EtcdServerError, endpoint: Endpoint, *, has_token: bool) -> Exception:
    """What an error answer means: the endpoint failed (etcd is not serving
    now), or the request was understood and refused — the caller's business,
    not the endpoint's."""
    if exc.code in UNAVAILABLE_CODES:
        return _EndpointFailed(exc.message, maybe_applied=exc.message not in _NOT_APPLIED)
    if exc.message == _NO_USER and not has_token:
        return StoreError(
            f"etcd {endpoint} requires authentication: give USER:PASSWORD@ in the store URL"
        )
    return exc


def _tls_failure(exc: ssl.SSLError) -> _EndpointFailed:
    """A TLS error that httpx let through. With TLS 1.3 a member that refuses
    our certificate says so only when we read its answer (an alert naming the
    certificate): it has not acted on the request. Any other TLS error may
    have come after it did."""
    refused = "CERTIFICATE" in (exc.reason or "")
    return _EndpointFailed(f"TLS: {exc}", maybe_applied=not refused)


def _error_of(endpoint: Endpoint, path: str, response: httpx.Response) -> Exception:
    try:
        error = json.loads(response.content)
        return EtcdServerError(endpoint, path, int(error["code"]), str(error["message"]))
    except (ValueError, KeyError, TypeError):
        # Not etcd's answer (a proxy, or a member shutting down): nothing is known.
        return _EndpointFailed(f"HTTP {response.status_code}", maybe_applied=True)


def _decode(content: bytes, endpoint: Endpoint) -> Json:
    try:
        decoded = json.loads(content)
    except ValueError:
        raise StoreError(f"etcd {endpoint} sent something that is not JSON") from None
    if not isinstance(decoded, dict):
        raise StoreError(f"etcd {endpoint} sent JSON that is not an object")
    return decoded


def _tls_context(url: EtcdUrl) -> ssl.SSLContext:
    """The TLS context for ``etcds://``: the URL's CA (or the system's) and client certificate."""
    try:
        context = ssl.create_default_context(cafile=url.cacert)
        if url.cert is not None:
            context.load_cert_chain(url.cert, url.key)
    except (OSError, ssl.SSLError) as exc:
        files = ", ".join(str(f) for f in (url.cacert, url.cert, url.key) if f is not None)
        raise ConfigError(f"etcd TLS files ({files}): {exc}") from exc
    return context

