"""Bounds on what one request may ask of a replica, whose event loop also keeps
its leader lease alive: a body larger than :data:`MAX_BODY_BYTES` is refused
with 413 before it is read whole (by its ``Content-Length``, or as it streams
in when it has none)."""

from __future__ import annotations

import json

from fastapi import HTTPException, status
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# A jobs file of 10,000 jobs is about 1 MB.
MAX_BODY_BYTES = 8 * 1024 * 1024


def _too_large(size: int | None) -> str:
    got = f" ({size} bytes)" if size is not None else ""
    return f"the request body is too large{got}: at most {MAX_BODY_BYTES} bytes"


class BodyLimit:
    """ASGI middleware: 413 for a request body over ``limit`` bytes."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await _refuse(send, _too_large(int(declared)))
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                # Raised inside the app's read of the body: FastAPI answers it.
                raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, _too_large(None))
            return message

        await self.app(scope, counted, send)


async def _refuse(send: Send, detail: str) -> None:
    # The connection is kept: the server reads the rest of the body and throws it
    # away. Closed with the body unread, it would be reset, and a client still
    # sending would lose the answer.
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status.HTTP_413_CONTENT_TOO_LARGE,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
