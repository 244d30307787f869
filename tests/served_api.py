"""The API on a real store, served by uvicorn in a background thread.

For tests and local tools that need a live server without a replica runtime.
The server runs its own event loop; the store is opened on that loop (a
store's connections belong to the loop that made them), and :meth:`ServedApi.call`
runs a coroutine there, so a test can seed or read the store directly.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

import uvicorn
from prometheus_client import CollectorRegistry

from distcron.api.app import create_app
from distcron.api.view import ReplicaView
from distcron.clock import Clock
from distcron.store import Store

T = TypeVar("T")


@dataclass
class StaticReplica:
    """A :class:`ReplicaView` whose answers are set by hand."""

    replica_id: str
    listen: str = "127.0.0.1:8500"
    is_leader: bool = False
    fence: int | None = None
    leader_changes: int = 0
    applied_revision: int = 0
    store_problem: str | None = None
    clock_skew: float | None = None
    clock_problem: str | None = None


class ServedApi:
    """``create_app`` served on ``127.0.0.1`` at a free port; a context manager."""

    def __init__(self, open_store: Callable[[], Store], replica: ReplicaView,
                 token: str | None, registry: CollectorRegistry | None = None,
                 clock: Clock | None = None) -> None:
        self._open_store = open_store
        self.replica = replica
        self.token = token
        self.registry = registry or CollectorRegistry()
        self.clock = clock
        self.url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._store: Store | None = None

    @property
    def store(self) -> Store:
        """The served store; use it only through :meth:`call`."""
        assert self._store is not None, "not started"
        return self._store

    def start(self, timeout: float = 10.0) -> None:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self._thread = threading.Thread(target=asyncio.run, args=(self._serve(sock),),
                                        name="served-api", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while self._server is None or not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the API server stopped while starting")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the API server did not start within {timeout}s")
            time.sleep(0.01)

    async def _serve(self, sock: socket.socket) -> None:
        self._loop = asyncio.get_running_loop()
        self._store = self._open_store()
        try:
            app = create_app(self._store, self.replica, self.token, self.registry,
                             clock=self.clock)
            self._server = uvicorn.Server(uvicorn.Config(app, log_level="warning",
                                                         lifespan="off"))
            await self._server.serve(sockets=[sock])
        finally:
            await self._store.close()
            sock.close()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        """Run ``coro`` on the server's loop and return its result."""
        assert self._loop is not None, "not started"
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self) -> ServedApi:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
