"""How a replica is configured: a file, then ``DISTCRON_*`` variables, then flags.

The file is TOML. Its ``[serve]`` table holds the settings below; its
``[[job]]`` tables, if any, are the whole job set, applied when the replica
starts (and on SIGHUP). A bad value fails at load with the setting named.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from distcron.bulk import collector_held
from distcron.errors import ConfigError
from distcron.jobs import plain_message
from distcron.notify.senders import Smtp
from distcron.replica.clocks import DEFAULT_MAX_CLOCK_SKEW
from distcron.replica.retention import DEFAULT_HISTORY
from distcron.scheduler.policy import STAGE_LEAD

DEFAULT_LISTEN = "127.0.0.1:8500"
DEFAULT_DATA_DIR = "distcron-data"

# setting -> environment variable
_ENVIRONMENT = {
    "store": "DISTCRON_STORE",
    "listen": "DISTCRON_LISTEN",
    "id": "DISTCRON_ID",
    "data_dir": "DISTCRON_DATA_DIR",
    "lease_ttl": "DISTCRON_LEASE_TTL",
    "token_file": "DISTCRON_TOKEN_FILE",
    "history": "DISTCRON_HISTORY",
    "stage_lead": "DISTCRON_STAGE_LEAD",
    "max_clock_skew": "DISTCRON_MAX_CLOCK_SKEW",
    "smtp": "DISTCRON_SMTP",
    "smtp_from": "DISTCRON_SMTP_FROM",
    "slurm_output_dir": "DISTCRON_SLURM_OUTPUT_DIR",
    "slurm_cluster": "DISTCRON_SLURM_CLUSTER",
    "slurm_conf": "DISTCRON_SLURM_CONF",
}


class ServeConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    store: str | None = None  # default: sqlite under data_dir
    listen: str = DEFAULT_LISTEN
    id: str | None = None
    data_dir: Path = Path(DEFAULT_DATA_DIR)
    lease_ttl: float = Field(default=3.0, gt=0.5, le=300)
    history: int = Field(default=DEFAULT_HISTORY, ge=1)  # launch records kept per job
    # Seconds before its slot a launch may be committed and prepared (0: never).
    stage_lead: float = Field(default=STAGE_LEAD, ge=0, le=60)
    # Seconds this replica's wall clock may be off from the median of the
    # replicas' before it stops leading (0: clocks are not compared).
    max_clock_skew: float = Field(default=DEFAULT_MAX_CLOCK_SKEW, ge=0, le=3600)
    # The SMTP server mailto: notifiers are sent through, HOST:PORT, and the sender.
    smtp: str | None = None
    smtp_from: str | None = None
    token_file: Path | None = None
    token: SecretStr | None = None
    # The Slurm executor (docs/slurm.md), there only when slurm_output_dir is set:
    # a directory the replicas and the Slurm nodes share; the cluster's name (in
    # every launch's location); the slurm.conf its commands use (SLURM_CONF).
    slurm_output_dir: Path | None = None
    slurm_cluster: str = Field(default="default", pattern=r"^[A-Za-z0-9._-]{1,64}$")
    slurm_conf: Path | None = None

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, value: str) -> str:
        host, port = split_listen(value)
        if not 0 <= port < 65536:
            raise ValueError(f"port {port} is out of range")
        return f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"

    @field_validator("smtp")
    @classmethod
    def _check_smtp(cls, value: str | None) -> str | None:
        if value is not None:
            split_listen(value)
        return value

    @property
    def smtp_server(self) -> Smtp | None:
        if self.smtp is None:
            return None
        host, port = split_listen(self.smtp)
        return Smtp(host, port, self.smtp_from or f"distcron@{socket.gethostname()}")

    @property
    def store_url(self) -> str:
        return self.store or f"sqlite:///{(self.data_dir / 'state.db').resolve()}"

    @property
    def host(self) -> str:
        return split_listen(self.listen)[0]

    @property
    def port(self) -> int:
        return split_listen(self.listen)[1]


def split_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"{value!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ConfigFile:
    """A config file, read once: its ``[serve]`` settings, the rest of it (the
    jobs: ``document``, None while only the ``[serve]`` part was parsed), and its
    text (for the jobs' errors, which name lines)."""

    path: Path
    settings: dict[str, Any]
    document: dict[str, Any] | None
    text: str
    has_jobs: bool


# A table header alone on its line: "[name]" or "[[name]]", maybe with a comment.
_HEADER = re.compile(r"[ \t]*(\[\[?)[ \t]*([^\[\]#]*?)[ \t]*\]\]?[ \t]*(#.*)?")


def load_config_file(path: Path) -> ConfigFile:
    """Read the config file at ``path``, and parse its ``[serve]`` part (the whole
    file when it cannot be cut cheaply; the jobs are then parsed only if needed:
    see :mod:`distcron.replica.jobsync`)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
        raise ConfigError(f"cannot read config file {path}: {reason}") from exc
    cut = _serve_part(text)
    if cut is not None:
        try:
            serve, rest = _parsed(path, cut[0])
        except ConfigError:
            pass  # told as for the whole file, with its own line numbers
        else:
            if not rest:
                return ConfigFile(path, serve, None, text, cut[1])
    serve, document = _parsed(path, text)
    return ConfigFile(path, serve, document, text, bool(document))


def _parsed(path: Path, text: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``[serve]`` table and the rest of TOML ``text``."""
    try:
        with collector_held():
            document = tomli.loads(text)
    except tomli.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: {exc}") from exc
    except RecursionError:
        raise ConfigError(f"config file {path}: arrays or tables are nested too deeply") from None
    serve = document.pop("serve", {})
    if not isinstance(serve, dict):
        raise ConfigError(f"config file {path}: [serve] must be a table")
    return serve, document


def _serve_part(text: str) -> tuple[str, bool] | None:
    """The lines of the ``[serve]`` table (and its sub-tables), and whether anything
    else is declared; None when a line could be read two ways (a multi-line string
    may hold a line that looks like a header) or keys come before the first header."""
    if '"""' in text or "'''" in text:
        return None
    kept: list[str] = []
    inside, others, started = False, False, False
    for line in text.split("\n"):
        header = _HEADER.fullmatch(line)
        if header is not None:
            started = True
            name = header.group(2).replace(" ", "")
            inside = header.group(1) == "[" and (name == "serve" or name.startswith("serve."))
            if not inside and name.split(".")[0].strip("\"'") == "serve":
                return None  # [[serve]] or a quoted "serve": the whole parse says what it is
            others = others or not inside
        elif not started and line.strip() and not line.lstrip().startswith("#"):
            return None
        if inside:
            kept.append(line)
    return "\n".join(kept), others


def build_config(file_settings: Mapping[str, Any], environ: Mapping[str, str],
                 flags: Mapping[str, Any]) -> ServeConfig:
    """Layer the three sources (later wins) and validate once."""
    settings: dict[str, Any] = dict(file_settings)
    for setting, variable in _ENVIRONMENT.items():
        if environ.get(variable):
            settings[setting] = environ[variable]
    settings.update({k: v for k, v in flags.items() if v is not None})
    token = environ.get("DISTCRON_TOKEN") or None
    token_file = settings.get("token_file")
    if token_file:
        try:
            token = Path(token_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"cannot read token file {token_file}: {exc.strerror}") from exc
    if token is not None and not token:
        raise ConfigError("the API token is empty")
    settings["token"] = token
    try:
        config = ServeConfig.model_validate(settings)
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(part) for part in problem["loc"])
        raise ConfigError(f"setting {where!r}: {plain_message(problem)}") from exc
    if config.token is None and not is_loopback(config.host):
        raise ConfigError(
            f"refusing to listen on {config.listen} without an API token: set "
            "DISTCRON_TOKEN or --token-file, or listen on a loopback address")
    return config

