"""Sending one notification to one notifier: a webhook POST, or a mail through SMTP.

A webhook gets the notification as a JSON body with ``Idempotency-Key: <launch
id>:<state>``, so a receiver that sees a notification twice (a leader died
between sending and recording the send) can tell. Any 2xx is an acknowledgement.
A mail goes to the address of a ``mailto:`` notifier, through the SMTP server
``serve`` was given.

On failure: :class:`DeliveryFailed` (the receiver did not answer, answered
other than 2xx, the SMTP server refused): the caller retries later. Nothing
here logs a notifier's URL: it may hold a secret; :func:`shown_url` is what
logs and people see.
"""

from __future__ import annotations

import asyncio
import smtplib
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

import httpx

from distcron import __version__
from distcron.errors import DistcronError

WEBHOOK_TIMEOUT = 10.0


class DeliveryFailed(DistcronError):
    """The notifier did not take the notification; try again later."""


@dataclass(frozen=True, slots=True)
class Smtp:
    """Where mail goes out: ``host:port``, and the sender's address."""

    host: str
    port: int = 25
    sender: str = "distcron@localhost"
    starttls: bool = False
    timeout: float = 10.0


class Message(Protocol):
    """What is sent: the notification's identity and its body."""

    @property
    def key(self) -> str: ...  # "<launch id>:<state>"
    @property
    def body(self) -> dict[str, Any]: ...


def shown_url(url: str) -> str:
    """A notifier's URL without what may be secret: user info, query, fragment."""
    parts = urlsplit(url)
    if parts.scheme == "mailto":
        return url
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    shown = f"{parts.scheme}://{'***@' if parts.username or parts.password else ''}{host}"
    shown += parts.path or ""
    return shown + ("?…" if parts.query else "")


async def send_webhook(client: httpx.AsyncClient, url: str, message: Message) -> None:
    headers = {"Idempotency-Key": message.key, "User-Agent": f"distcron/{__version__}",
               "Distcron-Launch-Id": str(message.body.get("launch_id", ""))}
    try:
        response = await client.post(url, json=message.body, headers=headers,
                                     timeout=WEBHOOK_TIMEOUT)
    except httpx.HTTPError as exc:
        raise DeliveryFailed(f"{shown_url(url)}: {type(exc).__name__}") from None
    if not response.is_success:
        raise DeliveryFailed(f"{shown_url(url)} answered {response.status_code}")


async def send_mail(smtp: Smtp | None, url: str, message: Message) -> None:
    if smtp is None:
        raise DeliveryFailed(f"{url}: no SMTP server was given to distcron serve (--smtp)")
    to = unquote(urlsplit(url).path)
    mail = EmailMessage()
    body = message.body
    mail["From"] = smtp.sender
    mail["To"] = to
    mail["Subject"] = f"[distcron] {body.get('job')} {body.get('state')}: {body.get('launch_id')}"
    mail["X-Distcron-Idempotency-Key"] = message.key
    mail.set_content(_mail_text(body))
    try:
        await asyncio.to_thread(_send_smtp, smtp, mail)
    except (OSError, smtplib.SMTPException) as exc:
        raise DeliveryFailed(f"mail to {to} via {smtp.host}:{smtp.port}: {exc}") from None


def _send_smtp(smtp: Smtp, mail: EmailMessage) -> None:
    with smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout) as server:
        if smtp.starttls:
            server.starttls()
        server.send_message(mail)


def _mail_text(body: dict[str, Any]) -> str:
    lines = [f"{key}: {value}" for key, value in body.items()
             if key != "output_tail" and value not in (None, "")]
    if body.get("output_tail"):
        lines += ["", "--- the end of its output ---", str(body["output_tail"])]
    return "\n".join(lines) + "\n"
