"""The HTTP executor: a launch is one HTTP request to an outside system.

``start`` sends the job's request (``url``, ``method``, ``headers``, ``body``)
and returns ``RUNNING`` at once; the run ends when the response's status line
has arrived: ``SUCCEEDED`` for a 2xx, ``FAILED`` for any other status
(redirects are not followed: a 3xx is ``FAILED`` too), with the reason
``HTTP 503 Service Unavailable`` and the first bytes of the body. A request
that gets no response (refused, reset, bad TLS) is ``FAILED`` with the error;
the job's ``timeout`` (``default_timeout`` when it has none) bounds the whole
call, from the connection to the status line, and past it the run is
``TIMED_OUT``. Runs have no exit code.

Every request carries ``Idempotency-Key: <launch id>`` and the launch's
``Distcron-Job``, ``Distcron-Launch-Id``, ``Distcron-Slot`` (empty for a run
started by hand), ``Distcron-Fence`` and ``Distcron-Store-Id``, the same
values a local job finds in its ``DISTCRON_*`` environment, so that the
receiver can drop a request it has already served and refuse one from a
deposed leader (a fence lower than one it has seen under the same store id).
They replace any job header of the same name. Header values (which may hold
tokens) and URLs beyond their host are never logged.

Runs are kept in this executor's memory only: ``start`` is idempotent per
launch id within the process (a second ``start``, even while the first request
is in flight, sends nothing and returns the run's status), and ``output`` holds
the response's status line, its headers and the first ``output_limit`` bytes
of its body, or the error.

On failure:

- Another process (a new leader) cannot learn what became of a request this
  one sent: to it the launch is ``NOT_FOUND``, which here does not mean "never
  sent". So ``location`` is ``None``: a replica never asks this executor about
  a launch it finds at takeover and fails closed, recording ``unknown``, or, for
  an idempotent job, sending it again. That is what ``Idempotency-Key`` is for,
  as long as the new attempt carries the same key.
- The status line has arrived but the body breaks off, or is still arriving at
  the timeout: the status decides the outcome (the receiver has answered, and
  calling the run failed could make a retry send it again); the output says
  where the body stopped.
- ``stop`` abandons the request at once (``grace`` has nothing to act on):
  ``STOPPED``, though the receiver may have got it and may act on it.
- ``close`` abandons requests in flight, whose runs become ``LOST``: whether
  they arrived is unknown, and no later executor can adopt them.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlsplit

import httpx

from distcron.errors import ExecutorError
from distcron.executors.base import Executor, HttpCall, LaunchRequest, RunState, RunStatus
from distcron.timefmt import utc_iso

log = logging.getLogger("distcron.executors")

DEFAULT_TIMEOUT = 60.0
# Requests sent at once; the others of a burst wait their turn (the job's timeout
# counts from the sending). httpx's pool spends CPU quadratic in the requests
# waiting for one of its connections: 2,000 at once blocked the event loop, and
# with it the lease keepalive, for most of a minute.
MAX_IN_FLIGHT = 64
# How much of a failed response's body the reason quotes: enough for a short
# error message, not a whole page.
REASON_BODY_CHARS = 200


class _Unsendable(Exception):
    """The launch cannot be sent as it is; nothing was sent."""


@dataclass
class _Run:
    request: LaunchRequest
    status: RunStatus
    output: bytes = b""
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    # What it means if the task is cancelled: set by stop and close before they
    # cancel it; anything else cancelling it leaves the outcome unknown.
    cancelled_as: tuple[RunState, str] = (
        RunState.LOST, "the request was abandoned in flight: whether it arrived is unknown")


@dataclass(frozen=True)
class _Outcome:
    state: RunState
    reason: str
    output: bytes
    http_status: int | None = None


class HttpExecutor(Executor):
    """Runs launches as HTTP requests; see the module docstring.

    ``default_timeout`` bounds the request of a job that sets no ``timeout``.
    """

    name = "http"
    # Runs live in this process's memory, which no other replica can read: a
    # takeover must treat their fate as unknown (see the module docstring).
    location = None

    def __init__(self, *, default_timeout: float = DEFAULT_TIMEOUT) -> None:
        self._default_timeout = default_timeout
        # No timeout of httpx's own: the job's timeout bounds the whole call.
        self._client = httpx.AsyncClient(timeout=None, follow_redirects=False)
        self._runs: dict[str, _Run] = {}
        self._in_flight = asyncio.Semaphore(MAX_IN_FLIGHT)
        self._closed = False

    async def start(self, request: LaunchRequest) -> RunStatus:
        launch_id = request.launch_id
        known = self._runs.get(launch_id)
        if known is not None:
            log.info("event=start_skipped launch_id=%s state=%s", launch_id,
                     known.status.state.value)
            return known.status
        if self._closed:
            raise ExecutorError(f"launch {launch_id!r}: the HTTP executor is closed; "
                                "nothing was sent, and starting again is safe")
        # Registered before the first await, so that a concurrent start finds it.
        run = _Run(request, RunStatus(launch_id, RunState.RUNNING,
                                      started_at=datetime.now(UTC)))
        self._runs[launch_id] = run
        try:
            call = _call_of(request)
            headers = _headers(request, call)
        except _Unsendable as exc:
            self._end(run, _Outcome(RunState.FAILED, str(exc), str(exc).encode()))
            return run.status
        run.task = asyncio.create_task(self._run(run, call, headers), name=f"http {launch_id}")
        run.task.add_done_callback(lambda task: self._on_task_done(run, task))
        log.info("event=run_started launch_id=%s method=%s host=%s", launch_id, call.method,
                 urlsplit(call.url).hostname)
        return run.status

    async def query(self, launch_id: str) -> RunStatus:
        run = self._runs.get(launch_id)
        if run is None:
            return RunStatus(launch_id, RunState.NOT_FOUND,
                             reason="not sent by this HTTP executor (it knows only its own)")
        return run.status

    async def wait(self, launch_id: str) -> RunStatus:
        run = self._runs.get(launch_id)
        if run is None:
            return await self.query(launch_id)
        await run.ended.wait()
        return run.status

    async def stop(self, launch_id: str, grace: float | None = None) -> RunStatus:
        run = self._runs.get(launch_id)
        if run is None or run.ended.is_set():
            return await self.query(launch_id)
        log.info("event=stop_requested launch_id=%s", launch_id)
        self._abandon(run, RunState.STOPPED,
                      "stopped on request while in flight: the receiver may have got it")
        return await self.wait(launch_id)

    async def output(self, launch_id: str) -> bytes:
        run = self._runs.get(launch_id)
        return b"" if run is None else run.output

    async def prune(self, before: datetime) -> list[str]:
        """Forget ended runs that ended before ``before``; returns their launch ids.
        A pruned launch is unknown to the executor: prune only what the store has
        recorded as ended, or a later ``start`` with its id would send it again."""
        removed = [launch_id for launch_id, run in self._runs.items()
                   if run.ended.is_set() and run.status.ended_at is not None
                   and run.status.ended_at < before]
        for launch_id in removed:
            del self._runs[launch_id]
            log.info("event=run_pruned launch_id=%s", launch_id)
        return removed

    async def close(self) -> None:
        """Abandon requests in flight (their runs become ``LOST``: no other
        executor can adopt them) and close the connections."""
        self._closed = True
        tasks = []
        for run in self._runs.values():
            if run.task is not None and not run.ended.is_set():
                self._abandon(run, RunState.LOST, "the executor closed while the request "
                              "was in flight: whether it arrived is unknown")
                tasks.append(run.task)
        if tasks:
            await asyncio.wait(tasks)
        await self._client.aclose()

    def _abandon(self, run: _Run, state: RunState, reason: str) -> None:
        assert run.task is not None
        run.cancelled_as = (state, reason)
        run.task.cancel()

    async def _run(self, run: _Run, call: HttpCall, headers: list[tuple[str, str]]) -> None:
        async with self._in_flight:
            outcome = await self._send(run.request, call, headers)
        self._end(run, outcome)

    async def _send(self, request: LaunchRequest, call: HttpCall,
                    headers: list[tuple[str, str]]) -> _Outcome:
        budget = request.timeout or self._default_timeout
        deadline = asyncio.get_running_loop().time() + budget
        try:
            async with asyncio.timeout_at(deadline):
                response = await self._client.send(
                    self._client.build_request(call.method, call.url, headers=headers,
                                               content=call.body),
                    stream=True)
        except TimeoutError:
            reason = f"no response within the timeout of {budget:g}s"
            return _Outcome(RunState.TIMED_OUT, reason, reason.encode())
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            reason = f"request failed: {_describe(exc)}"
            return _Outcome(RunState.FAILED, reason, reason.encode())
        try:
            body, broke_off = await _read_body(response, request.output_limit, deadline)
        finally:
            await response.aclose()
        reason = f"HTTP {response.status_code} {response.reason_phrase}".rstrip()
        if response.is_success:
            state = RunState.SUCCEEDED
        else:
            state = RunState.FAILED
            quoted = " ".join(body[:REASON_BODY_CHARS].decode(errors="replace").split())
            if quoted:
                reason += f": {quoted}"
        output = _head(response) + body
        if broke_off:
            output += f"\n[{broke_off}]\n".encode()
        return _Outcome(state, reason, output, response.status_code)

    def _end(self, run: _Run, outcome: _Outcome) -> None:
        run.status = RunStatus(run.request.launch_id, outcome.state,
                               started_at=run.status.started_at, ended_at=datetime.now(UTC),
                               reason=outcome.reason)
        run.output = outcome.output
        run.ended.set()
        log.info("event=run_ended launch_id=%s state=%s http_status=%s",
                 run.request.launch_id, outcome.state.value, outcome.http_status)

    def _on_task_done(self, run: _Run, task: asyncio.Task[None]) -> None:
        """End a run whose task did not end it itself: it was cancelled, or
        failed on a bug (never leave a run ``RUNNING`` forever)."""
        if run.ended.is_set():
            return
        if task.cancelled():
            state, reason = run.cancelled_as
        else:
            error = task.exception()
            log.error("event=http_run_crashed launch_id=%s", run.request.launch_id,
                      exc_info=error)
            state, reason = RunState.FAILED, f"the HTTP executor failed: {_describe(error)}"
        self._end(run, _Outcome(state, reason, reason.encode()))


def _call_of(request: LaunchRequest) -> HttpCall:
    if request.http is None:
        raise _Unsendable("not an HTTP launch (it has a command, not a url)")
    return request.http


def _headers(request: LaunchRequest, call: HttpCall) -> list[tuple[str, str]]:
    """The job's headers, then distcron's, which replace any of the same name."""
    ours = {
        "Idempotency-Key": request.idempotency_key or request.launch_id,
        "Distcron-Job": request.job,
        "Distcron-Launch-Id": request.launch_id,
        "Distcron-Slot": "" if request.slot is None else utc_iso(request.slot),
        "Distcron-Fence": str(request.fence),
        "Distcron-Store-Id": request.store_id,
    }
    reserved = {name.lower() for name in ours}
    headers = [(name, value) for name, value in call.headers.items()
               if name.lower() not in reserved]
    headers += ours.items()
    for name, value in headers:
        # httpx would raise UnicodeEncodeError quoting the value, which may be a secret.
        if not value.isascii():
            raise _Unsendable(f"header {name!r} has a non-ASCII value; nothing was sent")
    return headers


async def _read_body(response: httpx.Response, limit: int,
                     deadline: float) -> tuple[bytes, str]:
    """The first ``limit`` bytes of the body (decoded from its Content-Encoding),
    and why it stopped short of its end, if it did for another reason than the
    limit."""
    body = bytearray()
    try:
        async with asyncio.timeout_at(deadline):
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) >= limit:
                    return bytes(body[:limit]), ""
    except TimeoutError:
        return bytes(body), "the body was still arriving at the job's timeout"
    except httpx.HTTPError as exc:
        return bytes(body), f"the body broke off: {_describe(exc)}"
    return bytes(body), ""


def _head(response: httpx.Response) -> bytes:
    """The status line and headers, as received."""
    line = f"{response.http_version} {response.status_code} {response.reason_phrase}"
    headers = b"".join(name + b": " + value + b"\n" for name, value in response.headers.raw)
    return line.rstrip().encode() + b"\n" + headers + b"\n"


def _describe(error: BaseException | None) -> str:
    # Some httpx errors have no message: the type alone then says what happened.
    name = type(error).__name__
    return f"{name}: {error}" if str(error) else name
