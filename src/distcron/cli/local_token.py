"""The API token of a replica started without one, and how the CLI finds it.

A replica given no token (no ``DISTCRON_TOKEN``, no ``--token-file``) makes one:
``<data dir>/token``, created once, readable by its user alone, and kept across
restarts. So that the CLI of that user on that machine finds it without being
told, the replica also leaves a copy under the user's state directory
(``$XDG_STATE_HOME/distcron/tokens/<host>_<port>``, by default under
``~/.local/state``), named after the address it listens on; the CLI looks
there for a loopback ``--server``. Neither file is ever logged or printed.

On failure: a token file that exists but is readable by others is refused (the
replica says which file and how to fix it) rather than used.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path
from urllib.parse import urlsplit

from distcron.errors import ConfigError

TOKEN_FILE = "token"
_LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")


def state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "distcron"


def published_path(host: str, port: int) -> Path:
    return state_dir() / "tokens" / f"{host.strip('[]')}_{port}"


def ensure_token(data_dir: Path) -> str:
    """The data directory's token, made (0600) the first time."""
    path = data_dir / TOKEN_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_private(path)
    token = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(token + "\n")
        out.flush()
        os.fsync(out.fileno())
    return token


def publish(token: str, host: str, port: int) -> Path:
    """Leave a copy where this user's CLI looks for a replica at ``host:port``."""
    path = published_path(host, port)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(token + "\n")
    os.replace(tmp, path)
    return path


def find_token(server: str) -> str | None:
    """The token a replica on this machine published for ``server``, if any."""
    parts = urlsplit(server)
    host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
    if host not in _LOOPBACK_NAMES:
        return None
    for name in (host, *_LOOPBACK_NAMES):
        try:
            return _read_private(published_path(name, port))
        except (OSError, ConfigError):
            continue
    return None


def _read_private(path: Path) -> str:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"token file {path} is readable by others (mode "
                          f"{stat.S_IMODE(mode):o}); make it 0600 (chmod 600 {path})")
    token = path.read_text(encoding="utf-8").strip()
    if not token:
        raise ConfigError(f"token file {path} is empty")
    return token
