"""The HTTP executor against a real HTTP server on a loopback port.

Endpoints that must stay in flight wait for a gate that the test opens when it
wants them to answer (and that teardown opens for whatever is left), so no
test sleeps to pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest

from distcron.errors import ExecutorError
from distcron.executors.base import HttpCall, LaunchRequest, RunState
from distcron.executors.http import MAX_IN_FLIGHT, HttpExecutor
from tests.waiting import eventually

from .conftest import SLOT

pytestmark = pytest.mark.anyio

LAUNCH_ID = "ping@2026-11-24T06:00:00Z"
GATE_LIMIT = 30.0  # a held request answers by itself after this, so no thread hangs


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: Message
    body: bytes


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.received: list[Received] = []
        self.gate = threading.Event()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.received.append(Received(self.command, self.path, self.headers, body))
        # The client may have given up (timeout, stop) by the time we answer.
        with contextlib.suppress(OSError):
            _ROUTES[urlsplit(self.path).path](self)

    do_POST = do_PUT = do_DELETE = do_GET

    def answer(self, code: int, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def hold(self) -> None:
        self.server.gate.wait(GATE_LIMIT)
        self.answer(200, b"late")

    def trickle(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.end_headers()
        self.wfile.write(b"first part")
        self.wfile.flush()
        self.server.gate.wait(GATE_LIMIT)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the tests read what the server received instead."""


_ROUTES: dict[str, Callable[[_Handler], None]] = {
    "/ok": lambda handler: handler.answer(200, b"done"),
    "/fail": lambda handler: handler.answer(500, b"database is\n down\n"),
    "/big": lambda handler: handler.answer(200, b"x" * 100_000),
    "/hold": _Handler.hold,
    "/trickle": _Handler.trickle,
}


@pytest.fixture
def server() -> Iterator[_Server]:
    server = _Server()
    # A short poll, so that shutdown at teardown is quick.
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield server
    server.gate.set()
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
async def executor() -> AsyncIterator[HttpExecutor]:
    executor = HttpExecutor(default_timeout=10)
    yield executor
    await executor.close()


def http_launch(url: str, *, method: str = "POST", headers: Mapping[str, str] | None = None,
                body: str | None = None, timeout: float | None = None,
                launch_id: str = LAUNCH_ID, slot: datetime | None = SLOT) -> LaunchRequest:
    return LaunchRequest(launch_id=launch_id, job="ping", slot=slot, fence=42, timeout=timeout,
                         http=HttpCall(url, method, dict(headers or {}), body))


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def arrived(server: _Server, count: int = 1) -> None:
    await eventually(lambda: len(server.received) >= count, 10, f"{count} request(s) arrived")


async def test_the_request_carries_the_jobs_method_headers_and_body_and_the_launch(
        server: _Server, executor: HttpExecutor) -> None:
    request = http_launch(server.url("/ok"), method="PUT", body="hello",
                          headers={"X-Team": "ops", "Content-Type": "text/plain"})
    assert (await executor.start(request)).state is RunState.RUNNING
    ended = await executor.wait(LAUNCH_ID)
    assert (ended.state, ended.exit_code, ended.reason) == (RunState.SUCCEEDED, None,
                                                            "HTTP 200 OK")
    assert ended.started_at is not None and ended.ended_at is not None
    [received] = server.received
    assert (received.method, received.path, received.body) == ("PUT", "/ok", b"hello")
    assert received.headers["X-Team"] == "ops"
    assert received.headers["Content-Type"] == "text/plain"
    assert received.headers["Idempotency-Key"] == LAUNCH_ID
    assert received.headers["Distcron-Job"] == "ping"
    assert received.headers["Distcron-Launch-Id"] == LAUNCH_ID
    assert received.headers["Distcron-Slot"] == "2026-11-24T06:00:00Z"
    assert received.headers["Distcron-Fence"] == "42"


async def test_a_job_header_cannot_replace_the_idempotency_key_or_the_fence(
        server: _Server, executor: HttpExecutor) -> None:
    request = http_launch(server.url("/ok"),
                          headers={"idempotency-key": "mine", "Distcron-Fence": "999"})
    await executor.start(request)
    await executor.wait(LAUNCH_ID)
    [received] = server.received
    assert received.headers.get_all("Idempotency-Key") == [LAUNCH_ID]
    assert received.headers.get_all("Distcron-Fence") == ["42"]


async def test_a_run_started_by_hand_sends_an_empty_slot(
        server: _Server, executor: HttpExecutor) -> None:
    await executor.start(http_launch(server.url("/ok"), slot=None))
    await executor.wait(LAUNCH_ID)
    assert server.received[0].headers["Distcron-Slot"] == ""


async def test_a_server_error_fails_the_run_with_the_status_and_the_start_of_the_body(
        server: _Server, executor: HttpExecutor) -> None:
    await executor.start(http_launch(server.url("/fail")))
    ended = await executor.wait(LAUNCH_ID)
    assert ended.state is RunState.FAILED
    assert ended.exit_code is None
    assert ended.reason == "HTTP 500 Internal Server Error: database is down"


async def test_a_refused_connection_fails_the_run_and_its_output_is_the_error(
        executor: HttpExecutor) -> None:
    await executor.start(http_launch(f"http://127.0.0.1:{closed_port()}/ok"))
    ended = await executor.wait(LAUNCH_ID)
    assert ended.state is RunState.FAILED
    assert ended.reason.startswith("request failed: ConnectError")
    assert await executor.output(LAUNCH_ID) == ended.reason.encode()


async def test_an_endpoint_slower_than_the_timeout_times_the_run_out(
        server: _Server, executor: HttpExecutor) -> None:
    await executor.start(http_launch(server.url("/hold"), timeout=0.3))
    ended = await executor.wait(LAUNCH_ID)
    assert ended.state is RunState.TIMED_OUT
    assert ended.reason == "no response within the timeout of 0.3s"
    assert len(server.received) == 1


async def test_a_body_still_arriving_at_the_timeout_leaves_the_status_to_decide(
        server: _Server, executor: HttpExecutor) -> None:
    await executor.start(http_launch(server.url("/trickle"), timeout=0.5))
    ended = await executor.wait(LAUNCH_ID)
    assert ended.state is RunState.SUCCEEDED
    output = await executor.output(LAUNCH_ID)
    assert output.endswith(b"\n\nfirst part\n[the body was still arriving at the job's timeout]\n")


async def test_a_request_in_flight_reads_running_until_its_response_arrives(
        server: _Server, executor: HttpExecutor) -> None:
    started = await executor.start(http_launch(server.url("/hold")))
    await arrived(server)
    assert await executor.query(LAUNCH_ID) == started
    assert started.state is RunState.RUNNING
    server.gate.set()
    assert (await executor.wait(LAUNCH_ID)).state is RunState.SUCCEEDED


async def test_stopping_a_request_in_flight_abandons_it_and_reads_stopped(
        server: _Server, executor: HttpExecutor) -> None:
    await executor.start(http_launch(server.url("/hold")))
    await arrived(server)
    stopped = await executor.stop(LAUNCH_ID)
    assert stopped.state is RunState.STOPPED
    assert await executor.query(LAUNCH_ID) == stopped
    assert await executor.stop(LAUNCH_ID) == stopped


async def test_starting_a_launch_again_sends_nothing_and_returns_its_status(
        server: _Server, executor: HttpExecutor) -> None:
    request = http_launch(server.url("/hold"))
    first = await executor.start(request)
    assert await executor.start(request) == first
    server.gate.set()
    ended = await executor.wait(LAUNCH_ID)
    assert await executor.start(request) == ended
    assert len(server.received) == 1


async def test_concurrent_starts_share_one_request(
        server: _Server, executor: HttpExecutor) -> None:
    request = http_launch(server.url("/hold"))
    statuses = await asyncio.gather(*(executor.start(request) for _ in range(5)))
    assert len(set(statuses)) == 1
    await arrived(server)
    server.gate.set()
    ended = await asyncio.gather(*(executor.wait(LAUNCH_ID) for _ in range(5)))
    assert {status.state for status in ended} == {RunState.SUCCEEDED}
    assert len(server.received) == 1


async def test_output_holds_the_status_line_the_headers_and_the_start_of_the_body(
        server: _Server, executor: HttpExecutor) -> None:
    await executor.start(http_launch(server.url("/big")))
    await executor.wait(LAUNCH_ID)
    head, body = (await executor.output(LAUNCH_ID)).split(b"\n\n", 1)
    assert head.startswith(b"HTTP/1.0 200 OK\n")
    assert b"\nContent-Length: 100000" in head
    assert body == b"x" * 65536


async def test_header_values_and_url_queries_are_never_logged(
        server: _Server, executor: HttpExecutor, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="distcron.executors")
    request = http_launch(server.url("/fail?token=url-secret"),
                          headers={"Authorization": "Bearer header-secret"})
    await executor.start(request)
    await executor.wait(LAUNCH_ID)
    await executor.start(request)
    assert server.received[0].headers["Authorization"] == "Bearer header-secret"
    events = [record.getMessage() for record in caplog.records]
    assert f"event=run_started launch_id={LAUNCH_ID} method=POST host=127.0.0.1" in events
    assert f"event=run_ended launch_id={LAUNCH_ID} state=failed http_status=500" in events
    assert "secret" not in caplog.text


async def test_a_header_value_that_is_not_ascii_fails_the_run_without_sending_it(
        server: _Server, executor: HttpExecutor) -> None:
    status = await executor.start(http_launch(server.url("/ok"),
                                              headers={"X-Password": "pässwort"}))
    assert status.state is RunState.FAILED
    assert "'X-Password'" in status.reason and "pässwort" not in status.reason
    assert await executor.wait(LAUNCH_ID) == status
    assert server.received == []


async def test_a_launch_without_a_url_fails_without_sending_anything(
        executor: HttpExecutor) -> None:
    request = LaunchRequest(launch_id=LAUNCH_ID, job="ping", slot=SLOT, fence=1, command="true")
    status = await executor.start(request)
    assert status.state is RunState.FAILED
    assert "not an HTTP launch" in status.reason


async def test_a_launch_it_never_sent_is_not_found_and_has_no_location_to_match(
        executor: HttpExecutor) -> None:
    # A replica asks an executor about a launch only when their locations match:
    # None here, so a takeover treats every HTTP launch as of unknown fate.
    assert executor.location is None
    for status in (await executor.query(LAUNCH_ID), await executor.wait(LAUNCH_ID),
                   await executor.stop(LAUNCH_ID)):
        assert status.state is RunState.NOT_FOUND
    assert await executor.output(LAUNCH_ID) == b""


async def test_closing_the_executor_abandons_requests_in_flight_as_lost(
        server: _Server) -> None:
    executor = HttpExecutor()
    await executor.start(http_launch(server.url("/hold")))
    await arrived(server)
    await executor.close()
    lost = await executor.query(LAUNCH_ID)
    assert lost.state is RunState.LOST
    assert "unknown" in lost.reason
    with pytest.raises(ExecutorError, match="closed"):
        await executor.start(http_launch(server.url("/ok"), launch_id="ping@2"))


async def test_pruning_forgets_ended_runs_and_keeps_those_in_flight(
        server: _Server, executor: HttpExecutor) -> None:
    await executor.start(http_launch(server.url("/ok"), launch_id="ping@1"))
    await executor.wait("ping@1")
    await executor.start(http_launch(server.url("/hold"), launch_id="ping@2"))
    later = datetime.now(UTC) + timedelta(hours=1)
    assert await executor.prune(later) == ["ping@1"]
    assert (await executor.query("ping@1")).state is RunState.NOT_FOUND
    assert (await executor.query("ping@2")).state is RunState.RUNNING


def test_an_http_launch_request_survives_a_round_trip_and_takes_no_command() -> None:
    request = http_launch("https://example.com/hook", method="PATCH",
                          headers={"A": "b"}, body="{}", timeout=3)
    assert LaunchRequest.from_dict(request.to_dict()) == request
    with pytest.raises(ValueError, match="no command or argv"):
        LaunchRequest(launch_id="x@1", job="x", slot=None, fence=1, command="true",
                      http=HttpCall("https://example.com/"))
    # A request written before HTTP launches existed (an old run directory).
    old = LaunchRequest(launch_id="x@1", job="x", slot=None, fence=1, command="true")
    data = old.to_dict()
    del data["http"]
    assert LaunchRequest.from_dict(data) == old


async def test_a_burst_sends_at_most_max_in_flight_requests_at_once_and_all_in_the_end(
        server: _Server, executor: HttpExecutor) -> None:
    count = MAX_IN_FLIGHT + 40
    ids = [f"ping@2026-11-24T06:00:{n:02d}Z~{n}" for n in range(count)]
    for launch_id in ids:
        await executor.start(http_launch(server.url("/hold"), launch_id=launch_id))
    await arrived(server, MAX_IN_FLIGHT)
    # The rest wait for a request to end, however long that takes.
    await asyncio.sleep(0.3)
    assert len(server.received) == MAX_IN_FLIGHT
    server.gate.set()
    ended = [await executor.wait(launch_id) for launch_id in ids]
    assert {status.state for status in ended} == {RunState.SUCCEEDED}
    assert sorted(r.headers["Idempotency-Key"] for r in server.received) == sorted(ids)
