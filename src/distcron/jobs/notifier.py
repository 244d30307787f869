"""Notifiers: where people are told about launches (``[[notifier]]`` tables).

A notifier has a ``name`` (what jobs list in ``notify``) and a ``url``: an
``http://`` or ``https://`` webhook, or a ``mailto:`` address (sent through the
SMTP server ``distcron serve`` is given). It is stored as ``notifiers/<name>``
when a jobs file (or a replica's config file) that declares it is applied, or
put through the API; a file owns its notifiers as it owns its jobs.
"""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, StrictStr, field_validator

from distcron.errors import JobSpecError

NotifyState = Literal["failed", "timed_out", "lost", "unknown", "missed", "succeeded",
                      "skipped", "stopped"]
DEFAULT_NOTIFY_ON: tuple[NotifyState, ...] = ("failed", "timed_out", "lost", "unknown",
                                              "missed")

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", re.ASCII)
_ADDRESS = re.compile(r"[^@\s,;<>]+@[^@\s,;<>]+", re.ASCII)


def check_notifier_name(value: str) -> str:
    if not _NAME.fullmatch(value):
        raise ValueError(f"{value!r} is not a notifier name: letters, digits, '.', '_' "
                         "and '-', starting with a letter or digit")
    return value


class NotifierSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: StrictStr
    url: StrictStr
    # Who declared it, as for jobs (:mod:`distcron.jobs.jobset`): a config
    # file's absolute path, ``api``, or None (declared before sources were kept).
    source: StrictStr | None = None

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        return check_notifier_name(value)

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme in ("http", "https"):
            if not parts.hostname:
                raise ValueError("a webhook URL needs a host, e.g. https://hooks.example/x")
            return value
        if parts.scheme == "mailto":
            address = unquote(parts.path)
            if not _ADDRESS.fullmatch(address) or parts.query:
                raise ValueError(f"{address!r} is not one mail address (mailto:ops@example.com)")
            return value
        raise ValueError("must be an http(s):// webhook or a mailto: address")

    @property
    def is_mail(self) -> bool:
        return self.url.startswith("mailto:")

    def to_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_json(cls, data: str | bytes, source: str = "<json>") -> NotifierSpec:
        try:
            return cls.model_validate_json(data)
        except ValueError as exc:
            raise JobSpecError(f"{source}: not a notifier: {exc}") from None
