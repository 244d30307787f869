"""The HTTP client the ``jobs``, ``runs`` and ``status`` commands share.

Every client command takes ``--server`` (default ``http://127.0.0.1:8500``,
or ``DISTCRON_SERVER``) and ``--json``, on the group or on the subcommand,
and reads the API token from ``DISTCRON_TOKEN``, else from the copy a replica on
this machine left for its user (see :mod:`distcron.cli.local_token`). Exit codes: 0 done, 1 the
call failed (server unreachable, refused, not found, conflict, store down),
2 bad input (usage, or a job spec the server rejected).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar
from urllib.parse import urlsplit

import click
import httpx
from click.core import ParameterSource

from distcron.cli.local_token import find_token

DEFAULT_SERVER = "http://127.0.0.1:8500"
# How long a call waits for a replica on this machine whose port refuses (it is
# starting, as right after `distcron serve &`).
STARTING_PATIENCE = 5.0
_SERVER = "distcron.client.server"
_JSON = "distcron.client.json"

F = TypeVar("F", bound=Callable[..., Any])


class ClientError(click.ClickException):
    """A failed call, printed as ``Error: …``; exits 1."""


class BadInput(ClientError):
    """The server rejected what was sent (e.g. an invalid jobs file); exits 2."""

    exit_code = 2


# How strongly an option's value was asked for; defaults rank 0.
_RANK: dict[ParameterSource | None, int] = {
    ParameterSource.COMMANDLINE: 2, ParameterSource.ENVIRONMENT: 1}


def _remember(ctx: click.Context, param: click.Parameter, value: object) -> None:
    # ctx.meta is shared by a group and its subcommand, so "--server" may be
    # given on either; the value from the stronger source wins (the flag over
    # DISTCRON_SERVER over the default), and on a tie the subcommand's.
    assert param.name is not None
    key = _SERVER if param.name == "server" else _JSON
    rank = _RANK.get(ctx.get_parameter_source(param.name), 0)
    if rank >= ctx.meta.get(key, (None, -1))[1]:
        ctx.meta[key] = (value, rank)


def client_options(command: F) -> F:
    """Add ``--server`` and ``--json`` to a command or group."""
    command = click.option(
        "--json", "json_output", is_flag=True, expose_value=False, callback=_remember,
        help="Print JSON instead of a table.",
    )(command)
    return server_option(command)


def server_option(command: F) -> F:
    """Add ``--server`` alone, to a command whose output JSON would not change."""
    return click.option(
        "--server", envvar="DISTCRON_SERVER", show_envvar=True, default=DEFAULT_SERVER,
        show_default=True, expose_value=False, callback=_remember, metavar="URL",
        help="A replica's API.",
    )(command)


def wants_json(ctx: click.Context) -> bool:
    return bool(ctx.meta.get(_JSON, (False, 0))[0])


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2))


class ApiClient:
    """Calls a replica's API; every failure becomes a :class:`ClientError`."""

    def __init__(self, server: str, token: str | None, timeout: float = 10.0) -> None:
        self.server = server.rstrip("/")
        self.has_token = bool(token)
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._timeout = timeout

    @classmethod
    def from_context(cls, ctx: click.Context) -> ApiClient:
        server: str = ctx.meta.get(_SERVER, (DEFAULT_SERVER, 0))[0]
        return cls(server, os.environ.get("DISTCRON_TOKEN") or find_token(server))

    def call(self, method: str, path: str, *, params: dict[str, Any] | None = None,
             body: Any = None) -> Any:
        """The decoded JSON answer of a successful call."""
        response = self._response(method, path, params, body)
        try:
            return response.json()
        except ValueError:
            raise ClientError(
                f"{self.server} answered {path} without JSON: is it a distcron replica?"
            ) from None

    def call_text(self, method: str, path: str) -> str:
        """The text answer of a successful call."""
        return self._response(method, path, None, None).text

    def stream(self, path: str, params: dict[str, Any] | None = None) -> Iterator[bytes]:
        """The body of a successful GET as it arrives (no read timeout: a
        followed run's output may pause for long)."""
        timeout = httpx.Timeout(self._timeout, read=None)
        try:
            with httpx.Client(base_url=self.server, headers=self._headers,
                              timeout=timeout) as http, \
                    http.stream("GET", path, params=params) as response:
                if not response.is_success:
                    response.read()
                    raise _failure(response)
                yield from response.iter_bytes()
        except httpx.TransportError as exc:
            raise ClientError(f"the stream from {self.server} broke off "
                              f"({exc or type(exc).__name__})") from exc

    def _response(self, method: str, path: str, params: dict[str, Any] | None,
                  body: Any) -> httpx.Response:
        try:
            response = self._send(method, path, params, body)
        except httpx.TransportError as exc:
            raise ClientError(
                f"cannot reach the distcron server at {self.server} ({exc or type(exc).__name__});"
                " is a replica running there? (set --server or DISTCRON_SERVER)"
            ) from exc
        if not response.is_success:
            raise _failure(response)
        return response


    def _send(self, method: str, path: str, params: dict[str, Any] | None,
              body: Any) -> httpx.Response:
        """One request; a replica on this machine that is still starting (its
        port refuses) is given a few seconds."""
        patience = time.monotonic() + (STARTING_PATIENCE if _is_loopback(self.server) else 0)
        with httpx.Client(base_url=self.server, headers=self._headers,
                          timeout=self._timeout) as http:
            while True:
                try:
                    return http.request(method, path, params=params, json=body)
                except httpx.ConnectError:
                    if time.monotonic() > patience:
                        raise
                time.sleep(0.2)


def _is_loopback(server: str) -> bool:
    return urlsplit(server).hostname in ("127.0.0.1", "localhost", "::1")


def _failure(response: httpx.Response) -> ClientError:
    try:
        detail: Any = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    code = response.status_code
    if code == 422 and isinstance(detail, list):
        lines = [_problem(item) for item in detail]
        return BadInput("rejected, nothing changed:\n  " + "\n  ".join(lines))
    message = str(detail) if detail else f"HTTP {code} {response.reason_phrase}"
    return BadInput(message) if code == 422 else ClientError(message)


def _problem(item: Any) -> str:
    """One 422 problem: distcron's name their job and field in ``msg``; FastAPI's
    own (a malformed request) give a location instead."""
    if not isinstance(item, dict):
        return str(item)
    where = item.get("loc") if "job" not in item else None
    prefix = ".".join(str(part) for part in where) + ": " if where else ""
    return prefix + str(item.get("msg", item))
