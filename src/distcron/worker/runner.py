"""One assigned launch: claim it, run it with the local executor, report it.

The claim is one transaction: the worker's registration holds its current
lease, the assignment still holds the value the worker read, and no claim
exists yet; it writes ``claims/<launch id>``. The assignment's value, not only
its existence, is guarded so that a stop request written before the claim
(see :mod:`distcron.worker.protocol`) is never missed: the claim fails, the
worker reads the stop and claims that instead. When the claim exists already:

- it names another worker: the launch is theirs (two workers were assigned the
  same launch); this worker leaves it alone;
- it names this worker (this process restarted, or an earlier claim attempt
  raised StoreUnavailable after it was applied): the worker *adopts* the
  launch. The executor knows the run: follow it. The executor does not know it
  (``NOT_FOUND``) and no report exists: it was never started (the worker died
  between claim and start), so start it — the executor's start is idempotent by
  launch id, so this starts it at most once. The executor does not know it but a
  report exists: it *was* started and its run directory is gone (pruned, or a
  new data directory); report it ``lost`` rather than run it again (fail
  closed).

A stop request (the assignment rewritten with ``"stop": true``) is final for
the launch whenever it comes: before the start, nothing is started and the
launch is reported ``stopped`` at once; after it, the run is stopped through the
executor (SIGTERM to its process group, SIGKILL after the grace) and its end,
``stopped`` unless it ended by itself first, is reported as usual. A restarted
worker that finds a stop on a launch it claimed stops the adopted run, or does
not start a run it never started.

Reports (``reports/<launch id>``, and with the final one ``output/<launch id>``)
are plain writes, not tied to the lease, guarded only by the assignment still
existing: once the leader has recorded the outcome and deleted the assignment,
a late report would be litter that nobody deletes.

Claims, and apart reports, that many launches' tasks make in the same moment
(a burst) are batched (:mod:`distcron.worker.batches`): one transaction per
chunk of them, with each launch's guard (the lease's once). When a chunk's
guard fails, each launch in it sends its own transaction, as above, so the
outcomes are the same; a chunk that raised is retried as one launch's would be.

A launch assigned ahead of its slot (``release_by`` in the assignment) is
claimed at once, staged by the executor, and started when a release mark names
it (:mod:`distcron.worker.staged`); adopted after a restart, it is staged again
and waits for its mark the same way.

On failure:

- **Store unreachable**: every store call is retried with capped backoff until
  it answers or the worker stops; the run goes on meanwhile. A claim that raised
  may have been applied: the retry finds it and adopts it.
- **Registration lost**: the claim guard fails; the launch is left unclaimed
  (``Outcome.RETRY``) and the registration is told, so it registers again.
- **Executor cannot start the run** (``ExecutorError``: nothing was started):
  retried a few times, then reported ``failed`` with the reason.
- **Cancelled** (shutdown): the run goes on, detached; a restarted worker adopts
  it and reports it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, TypeVar

from pydantic import ValidationError

from distcron.clock import Clock
from distcron.errors import ExecutorError, StoreUnavailable
from distcron.executors.base import (
    DEFAULT_OUTPUT_LIMIT,
    Executor,
    LaunchRequest,
    RunState,
    RunStatus,
)
from distcron.executors.output import publish_while_running
from distcron.store import Compare, Get, KeyValue, Put, Store, Target
from distcron.store.layout import (
    assignment_key,
    claim_key,
    output_key,
    report_key,
    worker_key,
)
from distcron.timefmt import utc_iso
from distcron.worker.batches import Batcher
from distcron.worker.launches import Outcome, Step
from distcron.worker.protocol import Claim, Report, release_by_of, stop_requested
from distcron.worker.registration import Registration
from distcron.worker.staged import AssignmentWatch, StagedCalls

log = logging.getLogger("distcron.worker")

T = TypeVar("T")

START_ATTEMPTS = 3
RETRY_FIRST = 0.2  # seconds before the first retry of a store or executor call
RETRY_MAX = 5.0
# A running run's output reaches the store this often (when it grew).
LIVE_OUTPUT_EVERY = 2.0


def parse_request(launch_id: str, value: bytes) -> LaunchRequest | str:
    """The assignment's request, or why it cannot be read."""
    try:
        request = LaunchRequest.from_dict(json.loads(value))
    except (ValueError, KeyError, TypeError) as exc:
        return f"unreadable assignment: {exc}"
    if request.launch_id != launch_id:
        return f"the assignment holds launch {request.launch_id!r}"
    return request


def _first(result: tuple[KeyValue, ...] | int | None) -> KeyValue | None:
    assert isinstance(result, tuple)
    return result[0] if result else None


def never_started(launch_id: str) -> RunStatus:
    """The final status of a launch stopped before this worker started it."""
    return RunStatus(launch_id, RunState.STOPPED,
                     reason="stopped before it started: the leader asked for it to stop")


@dataclass(frozen=True)
class Claimed:
    """The launch is claimed by this worker. ``value``: the assignment's value
    at the claim (a stop request, maybe); ``adopted``: the claim existed
    already; ``report``: the report found then (``None``: none, ``"unreadable"``)."""

    value: bytes
    adopted: bool
    report: Report | Literal["unreadable"] | None = None


class LaunchRunner:
    """Claims, runs and reports launches for one worker; see the module docstring."""

    def __init__(self, store: Store, executor: Executor, registration: Registration,
                 clock: Clock) -> None:
        self.store = store
        self.executor = executor
        self.registration = registration
        self.clock = clock
        self.worker_id = registration.config.worker_id
        self.staged = StagedCalls(executor)
        # The claims, and apart the reports, of a burst's launches: a few
        # transactions, not one each (see distcron.worker.batches).
        self._claims = Batcher(store, "claims_batched", self.worker_id)
        self._reports = Batcher(store, "reports_batched", self.worker_id)

    async def handle(self, launch_id: str, value: bytes, progress: Callable[[Step], None],
                     stop: asyncio.Event, watch: AssignmentWatch) -> Outcome:
        """Take the launch assigned as ``value`` through claim, run and report,
        telling ``progress`` each :class:`~distcron.worker.launches.Step` (the
        run is over, and its slot free, at ``Step.ENDED``, before the final
        report is written). ``stop`` is set once the leader asked for the launch
        to be stopped: by the agent, which watches the assignment, or here when
        the claim finds the assignment rewritten."""
        claimed = await self._claim(launch_id, value)
        if isinstance(claimed, Outcome):
            return claimed
        progress(Step.CLAIMED)
        if stop_requested(claimed.value):
            stop.set()
        status = await self._first_status(launch_id, claimed, stop, watch)
        if status is None:
            return Outcome.DONE
        if status.state is RunState.RUNNING:
            progress(Step.RUNNING)
            await self._report(launch_id, status)
            status = await self._follow(launch_id, stop)
        progress(Step.ENDED)
        await self._report_final(launch_id, status)
        return Outcome.DONE

    async def _claim(self, launch_id: str, value: bytes) -> Outcome | Claimed:
        claim, assignment = claim_key(launch_id), assignment_key(self.worker_id, launch_id)
        registered = worker_key(self.worker_id)
        delay = RETRY_FIRST
        while True:
            # Read at each attempt: a retry after the store came back may find
            # the worker registered again under a new lease.
            lease = self.registration.lease
            if lease == 0:
                # Not only "not registered": LEASE == 0 also holds for an absent
                # key, so the guard below would pass without any registration.
                return Outcome.RETRY
            mine = Claim(worker=self.worker_id, claimed_at=utc_iso(self.clock.now()))
            holds_lease = Compare(registered, Target.LEASE, "==", lease)
            guard = [Compare.value_is(assignment, value), Compare.missing(claim)]
            puts = [Put(claim, mine.model_dump_json().encode())]
            try:
                # With the claims of this moment; alone (reading why it failed)
                # unless that batch held.
                held = await self._claims.submit([holds_lease], guard, puts)
                result = None if held else await self.store.txn(
                    [holds_lease, *guard], puts,
                    [Get(registered), Get(assignment), Get(claim), Get(report_key(launch_id))])
            except StoreUnavailable as exc:
                # It may have been applied: the next attempt finds our claim.
                log.warning("event=claim_failed launch_id=%s error=%r delay=%s", launch_id,
                            str(exc), delay)
                await self.clock.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)
                continue
            if result is None or result.succeeded:
                log.info("event=claimed launch_id=%s worker=%s", launch_id, self.worker_id)
                return Claimed(value, adopted=False)
            worker_kv, assignment_kv, claim_kv, report_kv = map(_first, result.results)
            if assignment_kv is None:
                log.info("event=assignment_gone launch_id=%s", launch_id)
                return Outcome.DONE
            owner = claimant(claim_kv)
            if claim_kv is not None and owner != self.worker_id:
                log.warning("event=claimed_elsewhere launch_id=%s owner=%s", launch_id, owner)
                return Outcome.DONE
            if worker_kv is None or worker_kv.lease != lease:
                log.info("event=claim_refused launch_id=%s reason=%r", launch_id,
                         "this worker's registration is gone")
                self.registration.mark_lost(lease, "the claim guard found it gone")
                return Outcome.RETRY
            if claim_kv is not None:
                return Claimed(assignment_kv.value, adopted=True,
                               report=_report_of(report_kv))
            if assignment_kv.value != value:
                # Rewritten since it was read (a stop request): claim what it
                # says now, so that a stop before the claim is never missed.
                log.info("event=assignment_changed launch_id=%s stop=%s", launch_id,
                         stop_requested(assignment_kv.value))
                value = assignment_kv.value
                continue
            # The claim vanished between the guard and the read: try again.

    async def _first_status(self, launch_id: str, claimed: Claimed, stop: asyncio.Event,
                            watch: AssignmentWatch) -> RunStatus | None:
        """The run's status once started or adopted (final without starting it
        when a stop came first); None when there is nothing left to do (its
        final report is written already)."""
        if not claimed.adopted:
            return await self._start(launch_id, claimed.value, stop, watch)
        status = await self._retrying(f"query launch {launch_id!r}",
                                      lambda: self.executor.query(launch_id))
        log.info("event=adopted launch_id=%s state=%s", launch_id, status.state.value)
        if status.state is RunState.STAGED:
            return await self._start(launch_id, claimed.value, stop, watch)
        if status.state is not RunState.NOT_FOUND:
            return status
        if claimed.report is None:
            log.info("event=adopt_start launch_id=%s reason=%r", launch_id,
                     "claimed, never started")
            return await self._start(launch_id, claimed.value, stop, watch)
        if claimed.report != "unreadable" and claimed.report.run_status().state.final:
            return None
        return RunStatus(launch_id, RunState.LOST,
                         reason="reported started, but the worker no longer has its run "
                                "directory (pruned, or a new data directory)")

    async def _start(self, launch_id: str, value: bytes, stop: asyncio.Event,
                     watch: AssignmentWatch) -> RunStatus | None:
        if stop.is_set():
            log.info("event=stopped_before_start launch_id=%s", launch_id)
            return never_started(launch_id)
        request = parse_request(launch_id, value)
        if isinstance(request, str):
            log.warning("event=bad_assignment launch_id=%s reason=%r", launch_id, request)
            return RunStatus.failed(launch_id, request)
        release_by = release_by_of(value)
        if release_by is not None:
            return await self._start_when_released(request, release_by, value, stop, watch)
        return await self._attempts(launch_id, lambda: self.executor.start(request), stop)

    async def _start_when_released(self, request: LaunchRequest, release_by: datetime,
                                   value: bytes, stop: asyncio.Event,
                                   watch: AssignmentWatch) -> RunStatus | None:
        """Stage the launch, then start it once a release mark names it (see
        :mod:`distcron.worker.staged`). Its assignment changed first: a stop,
        or a rewrite (the job edited), is started as it says now; a deletion
        (it was let go) gives None: nothing to report."""
        launch_id = request.launch_id
        watch.changed.clear()
        if watch.value == value:
            staged = await self.staged.stage((request, release_by))
            if isinstance(staged, ExecutorError):
                # Its release starts it as a plain start would.
                log.warning("event=stage_failed launch_id=%s error=%r", launch_id, str(staged))
            await _first_of(watch.released, watch.changed, stop)
            if watch.value == value and not stop.is_set():
                log.info("event=release_seen launch_id=%s", launch_id)

                async def release() -> RunStatus:
                    result = await self.staged.release(request)
                    if isinstance(result, ExecutorError):
                        raise result
                    return result
                return await self._attempts(launch_id, release, stop)
            await self.staged.unstage(launch_id)
        if watch.value is None and not stop.is_set():
            log.info("event=unstaged launch_id=%s reason=%r", launch_id,
                     "the assignment was deleted before its release")
            return None
        now_is = watch.value if watch.value is not None else value
        return await self._start(launch_id, now_is, stop, watch)

    async def _attempts(self, launch_id: str, start: Callable[[], Awaitable[RunStatus]],
                        stop: asyncio.Event) -> RunStatus:
        """``start()`` until it does not raise ExecutorError (nothing was
        started), a few times; not again once a stop is asked for."""
        error = ""
        for attempt in range(1, START_ATTEMPTS + 1):
            try:
                return await start()
            except ExecutorError as exc:
                error = str(exc)
                log.warning("event=start_failed launch_id=%s attempt=%s error=%r", launch_id,
                            attempt, error)
            if attempt < START_ATTEMPTS:
                await self.clock.sleep(RETRY_FIRST * 2**attempt)
                if stop.is_set():  # nothing was started yet: start nothing
                    log.info("event=stopped_before_start launch_id=%s", launch_id)
                    return never_started(launch_id)
        # ExecutorError means nothing was started: "failed" is the truth.
        return RunStatus.failed(launch_id, f"the worker could not start it: {error}")

    async def _follow(self, launch_id: str, stop: asyncio.Event) -> RunStatus:
        """The run's final status: its own end, or, once a stop is requested
        (before or meanwhile), the end the executor's stop gives it. Meanwhile
        its output is copied to the store as it grows."""
        ending = asyncio.ensure_future(self._retrying(
            f"wait for launch {launch_id!r}", lambda: self.executor.wait(launch_id)))
        asked = asyncio.ensure_future(stop.wait())
        done = asyncio.Event()
        publishing = asyncio.ensure_future(self._publish_output(launch_id, done))
        try:
            await asyncio.wait({ending, asked}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            asked.cancel()
            if not ending.done():
                ending.cancel()  # a poll of the run directory: nothing to undo
            # Awaited, not cancelled: a write in flight lands before the final output.
            done.set()
            await publishing
        if ending.done() and not ending.cancelled():
            return ending.result()  # it ended by itself first: that is its outcome
        log.info("event=run_stopping launch_id=%s", launch_id)
        # Idempotent, and it returns once the run is final (after the grace at worst).
        return await self._retrying(f"stop launch {launch_id!r}",
                                    lambda: self.executor.stop(launch_id))

    async def _publish_output(self, launch_id: str, done: asyncio.Event) -> None:
        """The running run's output tail to the store as it grows, as the leader
        does for its own runs; guarded by the assignment."""
        guard = [Compare.exists(assignment_key(self.worker_id, launch_id))]

        async def write(output: bytes) -> object:
            return await self.store.txn(guard, [Put(output_key(launch_id), output)])
        await publish_while_running(self.executor, launch_id, done, write, self.clock.sleep,
                                    LIVE_OUTPUT_EVERY)

    async def _report(self, launch_id: str, status: RunStatus,
                      output: bytes | None = None) -> None:
        puts = [Put(report_key(launch_id), Report.of(self.worker_id, status).to_json())]
        if output is not None:
            puts.append(Put(output_key(launch_id), output))
        guard = [Compare.exists(assignment_key(self.worker_id, launch_id))]
        what = f"report launch {launch_id!r}"
        # With the reports of this moment (idempotent puts: a batch that raised
        # is sent again); alone unless that batch held.
        held = (await self._retrying(what, lambda: self._reports.submit((), guard, puts))
                or (await self._retrying(what, lambda: self.store.txn(guard, puts))).succeeded)
        if held:
            log.info("event=reported launch_id=%s state=%s exit_code=%s", launch_id,
                     status.state.value, status.exit_code)
        else:
            log.info("event=report_dropped launch_id=%s state=%s reason=%r", launch_id,
                     status.state.value, "the assignment is gone")

    async def _report_final(self, launch_id: str, status: RunStatus) -> None:
        output = await self._retrying(f"read the output of launch {launch_id!r}",
                                      lambda: self.executor.output(launch_id))
        await self._report(launch_id, status, output[-DEFAULT_OUTPUT_LIMIT:])

    async def _retrying(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """``call()`` until it does not raise StoreUnavailable or ExecutorError
        (both say: not now); with capped exponential backoff."""
        delay = RETRY_FIRST
        while True:
            try:
                return await call()
            except (StoreUnavailable, ExecutorError) as exc:
                log.warning("event=retrying what=%r error=%r delay=%s", what, str(exc), delay)
            await self.clock.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)


async def _first_of(*events: asyncio.Event) -> None:
    waits = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()


def _report_of(kv: KeyValue | None) -> Report | Literal["unreadable"] | None:
    if kv is None:
        return None
    try:
        return Report.from_json(kv.value)
    except ValidationError:
        return "unreadable"


def claimant(kv: KeyValue | None) -> str | None:
    """The worker a ``claims/<launch id>`` key names, if it exists and is readable."""
    if kv is None:
        return None
    try:
        return Claim.model_validate_json(kv.value).worker
    except ValidationError:
        return None  # unreadable: certainly not a claim this worker wrote
