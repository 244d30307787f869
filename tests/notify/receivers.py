"""Real receivers on loopback for notification tests: an HTTP server that
records what it is sent (and can refuse for a while), and an SMTP server."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope, Session

from tests.serve_harness import free_port


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class WebhookReceiver:
    url: str
    received: list[Received] = field(default_factory=list)
    refuse: int = 0  # answer 503 to this many requests first
    lock: threading.Lock = field(default_factory=threading.Lock)

    def bodies(self) -> list[dict[str, Any]]:
        with self.lock:
            return [r.body for r in self.received]


@contextmanager
def webhook_receiver(refuse: int = 0) -> Iterator[WebhookReceiver]:
    port = free_port()
    receiver = WebhookReceiver(f"http://127.0.0.1:{port}/hook", refuse=refuse)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            body = json.loads(self.rfile.read(length))
            with receiver.lock:
                if receiver.refuse > 0:
                    receiver.refuse -= 1
                    self.send_response(503)
                    self.end_headers()
                    return
                receiver.received.append(Received(self.path, dict(self.headers), body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class MailReceiver:
    host: str
    port: int
    messages: list[tuple[list[str], Message]] = field(default_factory=list)


@contextmanager
def smtp_receiver() -> Iterator[MailReceiver]:
    receiver = MailReceiver("127.0.0.1", free_port())

    class Handler:
        async def handle_DATA(self, server: object, session: Session,
                              envelope: Envelope) -> str:
            content = envelope.content
            assert isinstance(content, bytes)
            receiver.messages.append((list(envelope.rcpt_tos), message_from_bytes(content)))
            return "250 OK"

    controller = Controller(Handler(), hostname=receiver.host, port=receiver.port)
    controller.start()
    try:
        yield receiver
    finally:
        controller.stop()
