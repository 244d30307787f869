"""What an ``etcd://`` store URL says, and how to show one without its password.

Form: ``etcd://[USER:PASSWORD@]HOST:PORT[,HOST:PORT…][/PREFIX][?OPTIONS]``, or
``etcds://`` for TLS. Hosts are names, IPv4 addresses or bracketed IPv6
addresses (``[::1]:2379``); a missing port is 2379. ``PREFIX`` (percent-decoded,
with a ``/`` added if it lacks one) is put before every key; no path means no
prefix. Options:

- ``timeout`` — how long one request to one endpoint may take (default ``2s``);
- ``max_txn_ops`` — the cluster's ``--max-txn-ops`` (default 128, etcd's);
- ``cacert``, ``cert``, ``key`` — TLS files (``etcds://`` only): the CA that
  signed the members' certificates (default: the system's), and a client
  certificate and its key, given together.

Write ``@``, ``/``, ``?`` or ``#`` inside the user, password or prefix as
``%40``, ``%2F``, ``%3F``, ``%23``. Every error is a
:class:`~distcron.errors.ConfigError` naming the URL with its password hidden.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, unquote

from distcron.durations import parse_duration
from distcron.errors import ConfigError

DEFAULT_PORT = 2379
DEFAULT_TIMEOUT = 2.0
# etcd's own default for --max-txn-ops; a cluster that allows more says so in the URL.
DEFAULT_MAX_TXN_OPS = 128
SCHEMES = ("etcd", "etcds")
_OPTIONS = ("timeout", "max_txn_ops", "cacert", "cert", "key")
_HOST = re.compile(
    r"(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<name>[A-Za-z0-9._-]+))(?::(?P<port>[0-9]+))?"
)


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int

    def base_url(self, tls: bool) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if tls else 'http'}://{host}:{self.port}"

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class EtcdUrl:
    """A parsed ``etcd://`` URL; its repr never shows the password."""

    endpoints: tuple[Endpoint, ...]
    prefix: str = ""
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    cacert: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    timeout: float = DEFAULT_TIMEOUT
    max_txn_ops: int = DEFAULT_MAX_TXN_OPS


def redact_url(url: str) -> str:
    """``url`` with the password replaced by ``***``.

    Errs towards hiding: everything between ``://`` and the last ``@`` before
    the query counts as user and password, even in a malformed URL.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    before_query, q, query = rest.partition("?")
    userinfo, at, hosts = before_query.rpartition("@")
    if not at:
        return url
    user, colon, _ = userinfo.partition(":")
    return f"{scheme}://{user}{':***' if colon else ''}@{hosts}{q}{query}"


def parse_etcd_url(url: str) -> EtcdUrl:
    """Parse an ``etcd://`` or ``etcds://`` URL (see the module docstring).

    Files named by TLS options are not opened here; the store does that.
    """
    shown = redact_url(url)

    def bad(reason: str) -> ConfigError:
        return ConfigError(f"store URL {shown!r}: {reason}")

    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in SCHEMES:
        raise bad("expected etcd://HOST:PORT[,HOST:PORT…][/PREFIX] (or etcds:// for TLS)")
    if "#" in rest:
        raise bad("write '#' as %23")
    rest, _, query = rest.partition("?")
    username = password = None
    if "@" in rest:
        userinfo, _, rest = rest.rpartition("@")
        user, colon, secret = userinfo.partition(":")
        username, password = unquote(user), unquote(secret)
        if not username or not colon or not password:
            raise bad("give both a user and a password (USER:PASSWORD@…), or neither")
    hosts, slash, path = rest.partition("/")
    endpoints = tuple(_endpoint(part, bad) for part in hosts.split(","))
    prefix = unquote(path) if slash else ""
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    options = _options(query, bad)
    tls = scheme == "etcds"
    files = {name: Path(options.pop(name)) for name in ("cacert", "cert", "key") if name in options}
    if files and not tls:
        raise bad(f"{', '.join(sorted(files))} need etcds:// (TLS)")
    if ("cert" in files) != ("key" in files):
        raise bad("give cert and key together")
    try:
        timeout = parse_duration(options.pop("timeout", str(DEFAULT_TIMEOUT)))
        max_txn_ops = int(options.pop("max_txn_ops", str(DEFAULT_MAX_TXN_OPS)))
    except ValueError as exc:
        raise bad(str(exc)) from exc
    if timeout <= 0 or max_txn_ops < 1:
        raise bad("timeout and max_txn_ops must be positive")
    return EtcdUrl(
        endpoints,
        prefix,
        tls,
        username,
        password,
        files.get("cacert"),
        files.get("cert"),
        files.get("key"),
        timeout,
        max_txn_ops,
    )


def _endpoint(text: str, bad: Callable[[str], ConfigError]) -> Endpoint:
    match = _HOST.fullmatch(text)
    port = int(match["port"]) if match and match["port"] else DEFAULT_PORT
    if match is None or not 0 < port < 65536:
        raise bad(f"bad endpoint {text!r} (expected HOST:PORT, e.g. 127.0.0.1:2379)")
    return Endpoint(match["v6"] or match["name"], port)


def _options(query: str, bad: Callable[[str], ConfigError]) -> dict[str, str]:
    options: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name in options:
            raise bad(f"option {name!r} given twice")
        if name not in _OPTIONS:
            raise bad(f"unknown option {name!r} (known: {', '.join(_OPTIONS)})")
        options[name] = value
    return options
