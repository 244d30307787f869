"""The Slurm executor: a launch is one Slurm batch job, named by its launch id.

Slurm is reached through its command-line tools (``sbatch``, ``squeue``,
``scancel``), run as subprocesses off the event loop; docs/slurm.md says why not
``slurmrestd``. Every launch is submitted with ``--job-name=<run id>`` and
``--comment="distcron fence=<fence> store=<store id>"``, so that any replica can
find it by name, and see which leader's term submitted it.

Idempotent by name: before submitting, ``start`` asks Slurm for jobs of that
name (``squeue --states=all --name=...``, one call for a whole burst) and
adopts one it finds; only a launch Slurm has no record of is submitted. A
submission whose answer was lost (``sbatch`` timed out, or failed to reach the
controller) is resolved by the same lookup before it is tried again, so a
controller that does not answer makes launches wait and retry, never double.

Every launch has a directory ``<output_dir>/<run id>/``, which must be on a file
system both the replicas and the Slurm nodes see: ``job.sh`` (a small wrapper
that runs the job), ``output`` (its stdout and stderr, Slurm's ``--output``),
``started`` (written by the wrapper on the node) and ``exit`` (the job's exit
status, written by the wrapper when the job ends). Without an accounting
database Slurm forgets a finished job ``MinJobAge`` seconds after its end
(``sacct`` has nothing); the ``exit`` file is how the outcome is still known
after that, by this or any later executor.

States: ``PENDING`` (Slurm's reason, such as ``Resources`` or ``Priority``, in
``reason``), ``RUNNING``, ``SUCCEEDED``, ``FAILED`` with the exit code,
``TIMED_OUT``, ``STOPPED`` (cancelled), ``MISSED`` (still pending at its
starting deadline: the executor cancels it, having written ``missed`` in its
directory), ``LOST`` (node failure, preemption, or a job Slurm forgot that left
no exit status). The deadline is the executor's, not Slurm's ``--deadline``:
Slurm checks that only for jobs it considers scheduling, and a job that can
never fit (more CPUs than any node has) would wait for ever.

The job's environment is its ``env`` and the ``DISTCRON_*`` variables, written
into ``job.sh``. The Slurm tools run with a clean environment (``PATH`` and the
executor's ``env``, such as ``SLURM_CONF``), so what sbatch copies into the job
(its default, ``--export=ALL``) holds nothing of the replica's own environment,
which may hold ``DISTCRON_TOKEN``. (``--export=NONE`` would do that too, but
makes slurmd load the user's login environment with ``su -`` for every job: a
login shell per launch, which on a busy node delays starts by seconds.) It runs
in ``workdir``, by default its directory.

On failure:

- The controller does not answer: ``start`` keeps looking up and submitting,
  with growing pauses, until it does; ``wait`` keeps polling. ``query`` gives up
  after a few tries with ExecutorError (a takeover then fails closed).
- ``sbatch`` rejects the job (bad partition, account, option): the run is
  ``FAILED`` with Slurm's message.
- A run Slurm no longer knows: the ``exit`` file says how it ended; without one
  the run is ``LOST`` if it was ever submitted or started, ``NOT_FOUND`` if it
  was not.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import os
import shlex
import shutil
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import ParamSpec, TypeVar

from distcron.errors import ExecutorError
from distcron.executors.base import (
    DEFAULT_OUTPUT_LIMIT,
    Executor,
    LaunchRequest,
    RunState,
    RunStatus,
    SlurmOptions,
)
from distcron.executors.slurm_states import STATES, SlurmJob, parse_squeue, status_of

log = logging.getLogger("distcron.executors")
_P = ParamSpec("_P")
_T = TypeVar("_T")

# How long one call of a Slurm tool may take before it counts as unanswered.
CALL_TIMEOUT = 30.0
POLL_INTERVAL = 1.0
# sbatch processes at once during a burst; the controller serialises them anyway.
SUBMIT_CONCURRENCY = 8
FILE_THREADS = 4
# Names per squeue call: a short enough command line, few enough calls.
NAMES_PER_LOOKUP = 200
RETRY_FIRST = 0.5
RETRY_MAX = 10.0
QUERY_ATTEMPTS = 3
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
SQUEUE_FIELDS = "JobID:|,Name:|,State:|,exit_code:|,StartTime:|,EndTime:|,Reason:|"
# Phrases of an sbatch error that mean the request may not have reached (or been
# answered by) the controller: the outcome is unknown, unlike a rejection.
_UNANSWERED = ("unable to contact", "socket timed out", "connection refused",
               "connect failure", "communications connection failure", "timed out",
               "zero bytes were transmitted", "not responding")


@dataclass(frozen=True)
class _Evidence:
    """What a run's directory says (see the module docstring)."""

    exit_status: int | None
    started: bool
    submitted: str | None
    start_by: datetime | None
    missed: bool


class _Unanswered(Exception):
    """A Slurm tool got no answer from the controller: what it did is unknown."""


@dataclass
class _Run:
    run_id: str
    status: RunStatus
    job_id: str | None = None
    output_limit: int = DEFAULT_OUTPUT_LIMIT
    # When a run still pending is given up as missed (slot + starting deadline).
    start_by: datetime | None = None
    # Why nothing was submitted, when start gave up before submitting.
    error: str | None = None
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    # Set once start has either adopted or submitted the launch.
    settled: asyncio.Event = field(default_factory=asyncio.Event)


class SlurmExecutor(Executor):
    """Runs launches as Slurm batch jobs; see the module docstring.

    ``output_dir`` is shared with the Slurm nodes; ``cluster`` names the Slurm
    cluster in ``location`` (a new leader asks only an executor on the same
    cluster about a run); ``env`` is added to the environment of every Slurm
    command (e.g. ``SLURM_CONF``); ``bin_dir`` holds the tools (else ``PATH``).
    """

    name = "slurm"
    paces_starts = True

    def __init__(self, output_dir: Path, *, cluster: str = "default",
                 env: Mapping[str, str] | None = None, bin_dir: Path | None = None,
                 poll_interval: float = POLL_INTERVAL, call_timeout: float = CALL_TIMEOUT,
                 submit_concurrency: int = SUBMIT_CONCURRENCY) -> None:
        self.output_dir = output_dir
        self.location = f"slurm:{cluster}"
        self.worker_name = None
        self._env = {"PATH": os.environ.get("PATH", DEFAULT_PATH), **(env or {})}
        self._bin_dir = bin_dir
        self._poll_interval = poll_interval
        self._call_timeout = call_timeout
        self._submits = asyncio.Semaphore(submit_concurrency)
        # The file work of a burst (hundreds of small writes) in threads of its
        # own, not ahead of the replica's store calls in asyncio's default pool.
        self._files = ThreadPoolExecutor(FILE_THREADS, thread_name_prefix="slurm-files")
        self._runs: dict[str, _Run] = {}
        self._queued: list[tuple[LaunchRequest, _Run]] = []
        # Each batch (what was queued in one turn of the loop) is looked up and
        # submitted by its own task, so that one batch waits for no other.
        self._batches: set[asyncio.Task[None]] = set()
        self._batch_due = False
        self._poller: asyncio.Task[None] | None = None
        self._asked: dict[str, list[asyncio.Future[SlurmJob | None]]] = {}
        self._asker: asyncio.Task[None] | None = None
        self._wake_poller = asyncio.Event()
        self._closed = False

    # -- the interface -----------------------------------------------------------------

    async def start(self, request: LaunchRequest) -> RunStatus:
        run_id = request.launch_id
        known = self._runs.get(run_id)
        if known is not None:
            await known.settled.wait()
            if known.error is None:
                return known.status
        if self._closed:
            raise ExecutorError(f"launch {run_id!r}: the Slurm executor is closed; nothing "
                                "was submitted, and starting again is safe")
        # Registered before the first await, so that a concurrent start finds it.
        run = _Run(run_id, RunStatus(run_id, RunState.PENDING, reason="being submitted"),
                   output_limit=request.output_limit, start_by=start_by(request))
        self._runs[run_id] = run
        self._queued.append((request, run))
        if not self._batch_due:
            self._batch_due = True
            task = asyncio.create_task(self._submit_queued(), name="slurm submit")
            self._batches.add(task)
            task.add_done_callback(self._batches.discard)
        await run.settled.wait()
        if run.error is not None:
            raise ExecutorError(f"launch {run_id!r}: {run.error}")
        return run.status

    async def release(self, requests: Sequence[LaunchRequest]
                      ) -> list[RunStatus | ExecutorError]:
        # All at once, so that the submitter looks the whole burst up in one call.
        results = await asyncio.gather(*(self.start(r) for r in requests),
                                       return_exceptions=True)
        out: list[RunStatus | ExecutorError] = []
        for result in results:
            if isinstance(result, RunStatus | ExecutorError):
                out.append(result)
            else:
                raise result
        return out

    async def query(self, run_id: str) -> RunStatus:
        """A run this executor follows: what its last poll learnt (one squeue per
        interval for all of them, however often they are asked about); any
        other: looked up in Slurm, then followed."""
        run = self._runs.get(run_id)
        if run is not None:
            return run.status
        delay = RETRY_FIRST
        for attempt in range(1, QUERY_ATTEMPTS + 1):
            try:
                job = await self._lookup_with_others(run_id)
                break
            except _Unanswered as exc:
                if attempt == QUERY_ATTEMPTS:
                    raise ExecutorError(f"launch {run_id!r}: Slurm did not answer: {exc}"
                                        ) from None
                await asyncio.sleep(delay)
                delay *= 2
        status = await self._status_from(run_id, job)
        if status.state is not RunState.NOT_FOUND:
            deadline = (await self._io(self._evidence, run_id)).start_by
            self._track(run_id, status, job, deadline)
        return status

    async def wait(self, run_id: str) -> RunStatus:
        run = self._runs.get(run_id)
        if run is None:
            status = await self.query(run_id)
            run = self._runs.get(run_id)
            if run is None:
                return status
        await run.settled.wait()
        await run.ended.wait()
        return run.status

    async def stop(self, run_id: str, grace: float | None = None) -> RunStatus:
        """``scancel --name``: Slurm's own ``KillWait`` is the grace (SIGTERM,
        then SIGKILL), not ``grace``."""
        known = self._runs.get(run_id)
        if known is not None:
            await known.settled.wait()  # a submission in flight lands first
        status = await self.query(run_id)
        if status.state.final or status.state is RunState.NOT_FOUND:
            return status
        log.info("event=stop_requested launch_id=%s", run_id)
        delay = RETRY_FIRST
        while True:
            try:
                await self._call("scancel", f"--name={run_id}")
                break
            except _Unanswered as exc:
                log.warning("event=slurm_unanswered call=scancel launch_id=%s error=%r",
                            run_id, str(exc))
            except ExecutorError as exc:
                log.warning("event=scancel_failed launch_id=%s error=%r", run_id, str(exc))
                break
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)
        self._wake_poller.set()
        return await self.wait(run_id)

    async def output(self, run_id: str) -> bytes:
        run = self._runs.get(run_id)
        limit = DEFAULT_OUTPUT_LIMIT if run is None else run.output_limit
        return await self._io(_tail, self._dir(run_id) / "output", limit)

    async def prune(self, before: datetime) -> list[str]:
        """Forget ended runs (and their directories) that ended before ``before``.
        Prune only what the store has recorded as ended: a pruned launch Slurm
        has forgotten too would read ``NOT_FOUND``."""
        removed = [run_id for run_id, run in self._runs.items()
                   if run.ended.is_set() and run.status.ended_at is not None
                   and run.status.ended_at < before]
        for run_id in removed:
            del self._runs[run_id]
            await self._io(shutil.rmtree, self._dir(run_id), True)
            log.info("event=run_pruned launch_id=%s", run_id)
        return removed

    async def close(self) -> None:
        """Stop submitting and polling; jobs go on in Slurm, and a later executor
        adopts them. Launches still waiting to be submitted raise ExecutorError
        (their lookups and submissions are abandoned: the next leader's lookup
        finds any that reached Slurm)."""
        self._closed = True
        for task in (*self._batches, self._poller, self._asker):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for answers in self._asked.values():
            for answer in answers:
                if not answer.done():
                    answer.set_exception(ExecutorError("the Slurm executor closed"))
        self._asked.clear()
        self._files.shutdown(wait=False)

    # -- submitting ------------------------------------------------------------------

    async def _submit_queued(self) -> None:
        try:
            await asyncio.sleep(0)  # the starts made in the same turn join the batch
        except asyncio.CancelledError:
            for _request, run in self._queued:
                self._fail_unsubmitted(run, "the Slurm executor closed before submitting; "
                                            "starting again is safe")
            raise
        finally:
            self._batch_due = False
        batch, self._queued = self._queued, []
        await self._submit_batch(batch)

    async def _submit_batch(self, batch: list[tuple[LaunchRequest, _Run]]) -> None:
        delay = RETRY_FIRST
        todo = batch
        try:
            while todo:
                try:
                    jobs = await self._lookup([run.run_id for _, run in todo])
                except ExecutorError as exc:
                    for _request, run in todo:
                        self._fail_unsubmitted(run, f"nothing was submitted: {exc}")
                    return
                except _Unanswered as exc:
                    log.warning("event=slurm_unanswered call=squeue launches=%d error=%r",
                                len(todo), str(exc))
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, RETRY_MAX)
                    continue
                results = await asyncio.gather(
                    *(self._adopt_or_submit(request, run, jobs.get(run.run_id))
                      for request, run in todo))
                todo = [item for item, done in zip(todo, results, strict=True) if not done]
                if todo:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, RETRY_MAX)
        except asyncio.CancelledError:
            for _request, run in todo:
                self._fail_unsubmitted(run, "the Slurm executor closed while submitting: "
                                            "a new lookup by name tells whether it was")
            raise

    async def _adopt_or_submit(self, request: LaunchRequest, run: _Run,
                               job: SlurmJob | None) -> bool:
        """Adopt the launch's Slurm job, or submit it; False when the answer of
        the submission was lost (look it up again, then retry)."""
        run_id = run.run_id
        try:
            if job is None:
                # One trip to the file system: what the directory says, and the
                # script written when it says nothing.
                known, script = await self._io(self._prepare, request)
            else:
                known = await self._status_from(run_id, job)
        except (OSError, ExecutorError) as exc:
            self._fail_unsubmitted(run, f"nothing was submitted: {exc}")
            return True
        if job is not None or known.state is not RunState.NOT_FOUND:
            # Known to Slurm, or forgotten by it but known to have run (or been
            # submitted) before: adopted, never submitted again.
            log.info("event=slurm_adopted launch_id=%s slurm_job=%s state=%s", run_id,
                     None if job is None else job.job_id, known.state.value)
            self._settle(run, known, job)
            return True
        try:
            assert script is not None
            async with self._submits:
                job_id = await self._sbatch(request, script)
        except _Unanswered as exc:
            log.warning("event=slurm_unanswered call=sbatch launch_id=%s error=%r", run_id,
                        str(exc))
            return False
        except ExecutorError as exc:
            log.warning("event=slurm_rejected launch_id=%s error=%r", run_id, str(exc))
            self._settle(run, RunStatus(run_id, RunState.FAILED, ended_at=datetime.now(UTC),
                                        reason=str(exc)), None)
            return True
        log.info("event=slurm_submitted launch_id=%s slurm_job=%s", run_id, job_id)
        job = SlurmJob(job_id, run_id, "PENDING", None, None, None, "None")
        self._settle(run, status_of(run_id, job, None), job)
        return True

    async def _sbatch(self, request: LaunchRequest, script: Path) -> str:
        run_dir = script.parent
        out = await self._call("sbatch", *sbatch_args(request, run_dir), str(script))
        job_id = out.strip().split(";")[0]
        if not job_id.isdigit():
            raise _Unanswered(f"sbatch answered {out.strip()!r}, not a job id")
        try:
            await self._io(_write_atomically, run_dir / "slurm_job", job_id + "\n")
        except OSError as exc:
            # Submitted all the same; only the record that outlives Slurm's is missing.
            log.warning("event=slurm_job_unrecorded launch_id=%s error=%r",
                        request.launch_id, str(exc))
        return job_id

    def _prepare(self, request: LaunchRequest) -> tuple[RunStatus, Path | None]:
        run_id = request.launch_id
        known = _judge(run_id, None, self._evidence(run_id))
        if known.state is not RunState.NOT_FOUND:
            return known, None
        return known, self._write_script(request, self._dir(run_id))

    def _write_script(self, request: LaunchRequest, run_dir: Path) -> Path:
        run_dir.mkdir(parents=True, exist_ok=True)
        deadline = start_by(request)
        if deadline is not None:
            # For any executor that follows the run, e.g. after a takeover.
            _write_atomically(run_dir / "start_by", deadline.isoformat() + "\n")
        path = run_dir / "job.sh"
        _write_atomically(path, job_script(request, run_dir))
        return path

    def _fail_unsubmitted(self, run: _Run, reason: str) -> None:
        """Give a start up before its submission: its caller gets ExecutorError,
        and a later start looks it up and submits it afresh."""
        if self._runs.get(run.run_id) is run and not run.settled.is_set():
            del self._runs[run.run_id]
            run.error = reason
            run.status = RunStatus(run.run_id, RunState.NOT_FOUND, reason=reason)
            run.settled.set()
            run.ended.set()

    # -- following --------------------------------------------------------------------

    def _settle(self, run: _Run, status: RunStatus, job: SlurmJob | None) -> None:
        if self._runs.get(run.run_id) is not run:
            return
        run.status = status
        run.job_id = None if job is None else job.job_id
        run.settled.set()
        if status.state.final:
            run.ended.set()
        else:
            self._ensure_poller()

    def _track(self, run_id: str, status: RunStatus, job: SlurmJob | None,
               deadline: datetime | None = None) -> None:
        run = self._runs.get(run_id)
        if run is None:
            run = _Run(run_id, status, start_by=deadline)
            self._runs[run_id] = run
            self._settle(run, status, job)
        elif run.settled.is_set():
            self._update(run, status)

    def _update(self, run: _Run, status: RunStatus) -> None:
        if run.ended.is_set():
            return
        if status.state is not run.status.state:
            log.info("event=slurm_state launch_id=%s slurm_job=%s state=%s reason=%r",
                     run.run_id, run.job_id, status.state.value, status.reason)
        run.status = status
        if status.state.final:
            run.ended.set()
            log.info("event=run_ended launch_id=%s state=%s exit_code=%s", run.run_id,
                     status.state.value, status.exit_code)

    def _ensure_poller(self) -> None:
        if not self._closed and (self._poller is None or self._poller.done()):
            self._poller = asyncio.create_task(self._poll(), name="slurm poll")

    async def _poll(self) -> None:
        """One lookup for every followed run per interval, until none is left."""
        while True:
            live = [run for run in self._runs.values()
                    if run.settled.is_set() and not run.ended.is_set()]
            if not live:
                return
            try:
                jobs = await self._lookup([run.run_id for run in live])
                now = datetime.now(UTC)
                for run in live:
                    self._update(run, await self._status_from(run.run_id,
                                                              jobs.get(run.run_id)))
                    if (run.status.state is RunState.PENDING and run.start_by is not None
                            and now > run.start_by and not run.ended.is_set()):
                        await self._give_up_pending(run)
            except (_Unanswered, ExecutorError) as exc:
                # Asked again at the next interval: a run is never left unfollowed.
                log.warning("event=slurm_poll_failed launches=%d error=%r", len(live),
                            str(exc))
            self._wake_poller.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake_poller.wait(), self._poll_interval)

    async def _give_up_pending(self, run: _Run) -> None:
        """Cancel a run still pending at its starting deadline; it reads MISSED."""
        log.info("event=slurm_missed launch_id=%s slurm_job=%s", run.run_id, run.job_id)
        try:
            await self._io(_write_atomically, self._dir(run.run_id) / "missed", "\n")
            await self._call("scancel", "--state=PENDING", f"--name={run.run_id}")
        except (_Unanswered, ExecutorError) as exc:
            log.warning("event=scancel_failed launch_id=%s error=%r", run.run_id, str(exc))
        self._wake_poller.set()

    async def _status_from(self, run_id: str, job: SlurmJob | None) -> RunStatus:
        """What Slurm says of the run, or (when it knows nothing) its directory."""
        if job is not None and not STATES.get(job.state, RunState.RUNNING).final:
            # Pending or running: nothing in its directory changes that (and a
            # poll of many runs reads no files for them).
            return status_of(run_id, job, None)
        return _judge(run_id, job, await self._io(self._evidence, run_id))

    def _evidence(self, run_id: str) -> _Evidence:
        run_dir = self._dir(run_id)
        exit_text = _read_text(run_dir / "exit")
        deadline = _read_text(run_dir / "start_by")
        return _Evidence(
            exit_status=int(exit_text) if exit_text is not None and exit_text.isdigit()
            else None,
            started=(run_dir / "started").exists(), submitted=_read_text(run_dir / "slurm_job"),
            start_by=None if deadline is None else datetime.fromisoformat(deadline),
            missed=(run_dir / "missed").exists())

    async def _io(self, func: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        return await asyncio.get_running_loop().run_in_executor(
            self._files, functools.partial(func, *args, **kwargs))

    # -- calling Slurm -----------------------------------------------------------------

    async def _lookup_with_others(self, run_id: str) -> SlurmJob | None:
        """Slurm's job of this name, looked up in one call with those of every
        query made meanwhile (a takeover asks about many launches at once)."""
        answer: asyncio.Future[SlurmJob | None] = asyncio.get_running_loop().create_future()
        self._asked.setdefault(run_id, []).append(answer)
        if self._asker is None or self._asker.done():
            self._asker = asyncio.create_task(self._answer_asked(), name="slurm lookup")
        return await answer

    async def _answer_asked(self) -> None:
        await asyncio.sleep(0)  # the queries made in the same turn join this call
        while self._asked:
            asked, self._asked = self._asked, {}
            try:
                jobs = await self._lookup(list(asked))
            except (_Unanswered, ExecutorError) as exc:
                for answers in asked.values():
                    for answer in answers:
                        if not answer.done():
                            answer.set_exception(exc)
                continue
            for name, answers in asked.items():
                for answer in answers:
                    if not answer.done():
                        answer.set_result(jobs.get(name))

    async def _lookup(self, names: Sequence[str]) -> dict[str, SlurmJob]:
        """Slurm's jobs of these names (the first submitted, for a name found twice)."""
        found: dict[str, SlurmJob] = {}
        for i in range(0, len(names), NAMES_PER_LOOKUP):
            chunk = names[i:i + NAMES_PER_LOOKUP]
            out = await self._call("squeue", "--noheader", "--states=all",
                                   f"--name={','.join(chunk)}", f"--Format={SQUEUE_FIELDS}")
            wanted = set(chunk)
            for job in parse_squeue(out):
                if job.name not in wanted:
                    continue
                first = found.get(job.name)
                if first is None or int(job.job_id) < int(first.job_id):
                    if first is not None:
                        log.warning("event=slurm_duplicate_name launch_id=%s slurm_jobs=%s,%s",
                                    job.name, first.job_id, job.job_id)
                    found[job.name] = job
        return found

    async def _call(self, tool: str, *args: str) -> str:
        """Run one Slurm tool; its stdout. Raises _Unanswered when the controller
        did not answer (the call may or may not have taken effect), ExecutorError
        when it refused."""
        program = str(self._bin_dir / tool) if self._bin_dir is not None else tool
        try:
            process = await asyncio.create_subprocess_exec(
                program, *args, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=self._env)
        except OSError as exc:
            raise ExecutorError(f"cannot run {tool}: {exc}") from exc
        try:
            out, err = await asyncio.wait_for(process.communicate(), self._call_timeout)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise _Unanswered(f"{tool} did not finish within {self._call_timeout:g}s") from None
        except asyncio.CancelledError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            raise
        if process.returncode != 0:
            message = " ".join(err.decode(errors="replace").split()) or f"exit {process.returncode}"
            if any(phrase in message.lower() for phrase in _UNANSWERED):
                raise _Unanswered(f"{tool}: {message}")
            raise ExecutorError(f"{tool}: {message}")
        return out.decode(errors="replace")

    def _dir(self, run_id: str) -> Path:
        return self.output_dir / run_id


def _judge(run_id: str, job: SlurmJob | None, found: _Evidence) -> RunStatus:
    """The run's status from Slurm's job (None: Slurm knows none) and its directory."""
    if job is not None:
        status = status_of(run_id, job, found.exit_status)
        if status.state is RunState.STOPPED and found.missed and not found.started:
            return RunStatus(run_id, RunState.MISSED, ended_at=status.ended_at,
                             reason=f"still pending in Slurm at its starting deadline "
                                    f"{found.start_by}: cancelled")
        return status
    if found.exit_status is not None:
        code = found.exit_status
        return RunStatus(run_id, RunState.SUCCEEDED if code == 0 else RunState.FAILED,
                         exit_code=code, reason="" if code == 0 else f"exit code {code}")
    if found.missed and not found.started:
        return RunStatus(run_id, RunState.MISSED, reason=(
            "still pending in Slurm at its starting deadline: cancelled"))
    if found.started or found.submitted:
        what = "started" if found.started else f"submitted as Slurm job {found.submitted}"
        return RunStatus(run_id, RunState.LOST, reason=(
            f"{what}, but Slurm no longer knows it and it left no exit status"))
    return RunStatus(run_id, RunState.NOT_FOUND, reason="Slurm has no job of this name")


def sbatch_args(request: LaunchRequest, run_dir: Path) -> list[str]:
    """sbatch's options for the launch (the script comes after them)."""
    options = request.slurm or SlurmOptions()
    args = ["--parsable", f"--job-name={request.launch_id}",
            f"--comment={sbatch_comment(request)}", f"--output={run_dir / 'output'}",
            "--open-mode=append", f"--chdir={request.workdir or run_dir}"]
    if options.partition is not None:
        args.append(f"--partition={options.partition}")
    if options.cpus is not None:
        args.append(f"--cpus-per-task={options.cpus}")
    if options.memory is not None:
        args.append(f"--mem={options.memory}")
    if options.account is not None:
        args.append(f"--account={options.account}")
    if options.qos is not None:
        args.append(f"--qos={options.qos}")
    limit = options.time_limit or request.timeout
    if limit is not None:
        # Slurm's time limits are whole minutes.
        minutes = max(1, math.ceil(limit / 60))
        args.append(f"--time={minutes}")
    args += options.sbatch_options
    return args


def sbatch_comment(request: LaunchRequest) -> str:
    """Which leader's term (fence, of which store) submitted the launch."""
    store = f" store={request.store_id}" if request.store_id else ""
    return f"distcron fence={request.fence}{store}"


def start_by(request: LaunchRequest) -> datetime | None:
    """When a launch still pending is given up: its slot plus its starting deadline."""
    options = request.slurm
    if options is None or options.starting_deadline is None or request.slot is None:
        return None
    return request.slot + timedelta(seconds=options.starting_deadline)


def job_script(request: LaunchRequest, run_dir: Path) -> str:
    """The wrapper sbatch runs: marks the start, runs the job as a child (so an
    ``exit`` in the command cannot skip the end), and writes its exit status."""
    q = shlex.quote
    lines = ["#!/bin/sh", f"# distcron launch {request.launch_id}",
             f"run_dir={q(str(run_dir))}", ': > "$run_dir/started"',
             'export PATH="${PATH:-/usr/local/bin:/usr/bin:/bin}"']
    env = {**request.env, **request.launch_env()}
    lines += [f"export {name}={q(value)}" for name, value in env.items()]
    if request.command is not None:
        lines.append(f"/bin/sh -c {q(request.command)}")
    else:
        assert request.argv is not None
        lines.append(" ".join(q(arg) for arg in request.argv))
    lines += ['status=$?', 'printf "%s\\n" "$status" > "$run_dir/exit.tmp"',
              'mv "$run_dir/exit.tmp" "$run_dir/exit"', 'exit "$status"', ""]
    return "\n".join(lines)


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ExecutorError(f"cannot read {path}: {exc}") from exc


def _tail(path: Path, limit: int) -> bytes:
    try:
        with path.open("rb") as file:
            size = file.seek(0, os.SEEK_END)
            file.seek(max(0, size - limit))
            return file.read()
    except FileNotFoundError:
        return b""
    except OSError as exc:
        raise ExecutorError(f"cannot read {path}: {exc}") from exc
