"""The local executor: runs launches on this machine, each under its own supervisor.

Every launch gets a run directory under ``run_dir`` (see
:mod:`distcron.executors.rundir`) and a supervisor process
(:mod:`distcron.executors.supervisor`) that outlives the replica. Everything the
executor knows is in those directories, so any ``LocalExecutor`` on the same
``run_dir`` — this one, one in a restarted replica, one in another replica on
the same machine — sees the same runs and starts each launch at most once.

Starting a launch: the executor claims it (creates its run directory, holding
its lock), sends it with the locked descriptor to its fork server
(:mod:`distcron.executors.forkserver`, started at the first launch), which forks
the supervisor, and waits on a handshake pipe until the supervisor has started
the job. Supervisors are forks of that small process, not new interpreters: a
launch costs a few milliseconds of CPU (the fork, then the supervisor's own
work), where an interpreter's start and imports alone cost 60 or more.

The job's environment is ``base_env`` (by default :func:`default_base_env`),
then the job's own ``env``, then ``DISTCRON_JOB``, ``DISTCRON_LAUNCH_ID``,
``DISTCRON_SLOT`` (empty for a run started by hand), ``DISTCRON_FENCE`` and
``DISTCRON_STORE_ID`` (the store's identity: fences of two incarnations of a
store, such as a file made again, differ by it).
Nothing is inherited from the replica's environment, which may hold
``DISTCRON_TOKEN``; neither the fork server nor the supervisor gets it either.
The job runs in its ``workdir``, by default the ``HOME`` of ``base_env``.

On failure:

- The replica dies, even by SIGKILL: supervisors are not its children, not in
  its session and not tied to it by a pipe, so runs go on and their timeouts
  hold. Its fork server sees its socket close, forks what it was already sent,
  and exits. A new executor on the same ``run_dir`` adopts the runs:
  ``query``, ``wait``, ``stop`` and ``output`` work as for its own, and it
  starts a fork server of its own at its first launch.
- The fork server dies, or lets a launch go unforked: until the supervisor has
  started the job, ``start`` keeps its own copy of the run's lock, so nobody
  else can have started it; it sends the launch to a new fork server, once.
  If that one fails too, ExecutorError and nothing was started. A start is
  never lost silently and never made twice.
- A supervisor dies without recording the end (killed, machine restart): its
  run reads ``LOST``, never ``RUNNING`` forever. The job may still be running,
  orphaned; the executor does not kill it, as its process group id may have
  been reused.
- ``start`` cannot create the run directory, reach a fork server, fork the
  supervisor, or the supervisor dies before starting the job: ExecutorError,
  and nothing was started; starting again is safe (a run directory left
  without a supervisor reads ``NOT_FOUND`` and the next ``start`` takes it over).
- The supervisor takes longer than ``start_timeout`` to start the job (a
  stopped fork server, an overloaded machine): ``start`` returns the run as
  ``RUNNING`` (starting); the supervisor may still start it, or the run ends
  up ``NOT_FOUND`` (never started) or ``LOST``.
- A ``start`` cancelled by its caller still hands the launch over (or lets go
  of it) before its work ends; ``close`` waits for such starts.
- Other file-system errors raise ExecutorError naming the launch.

Runs outlive the replica only if whatever manages the replica lets them: under
systemd, stopping a unit kills its whole cgroup unless it sets
``KillMode=process``. Linux only (``/proc``, ``flock``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import pwd
import secrets
import socket
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from distcron.errors import ExecutorError
from distcron.executors import batch, rundir
from distcron.executors.base import Executor, LaunchRequest, RunState, RunStatus
from distcron.executors.forkserver import FORK_FAILED, ForkServer, ForkServerProcess
from distcron.executors.output import read_output

log = logging.getLogger("distcron.executors")

_P = ParamSpec("_P")
_T = TypeVar("_T")

# cron's choice for PATH, with sbin: the same on every replica, whatever
# environment the replica itself was started with.
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# How many fork servers a launch is sent to before start gives up: one dying
# now and then is survived; a fork server that cannot live is an error.
SEND_ATTEMPTS = 2
# How long a release waits to hear from a batch before it reads the runs instead.
RELEASE_WAIT = 2.0
# At most this many staged launches have their shells started ahead and held at
# their gates (see :mod:`distcron.executors.batch`), some 160 KB each: a herd
# beyond it is spawned at its slot.
PRESTART_LIMIT = 5000


def default_base_env() -> dict[str, str]:
    """PATH, HOME, USER, LOGNAME, SHELL and LANG, for the user the replica runs as."""
    try:
        entry = pwd.getpwuid(os.getuid())
        home, user = entry.pw_dir, entry.pw_name
    except KeyError:  # a uid without a passwd entry, common in containers
        home, user = "/", str(os.getuid())
    return {"PATH": DEFAULT_PATH, "HOME": home, "USER": user, "LOGNAME": user,
            "SHELL": "/bin/sh", "LANG": "C.UTF-8"}


@dataclass
class _Handoff:
    """A claimed launch, sent to the fork server, its supervisor not yet known to
    have started the job. We keep a copy of the run's lock meanwhile: should the
    fork server let the launch go unforked, nobody else can have started it, and
    it can be sent again without claiming it again."""

    lock_fd: int
    ready_fd: int  # the read end of the handshake pipe
    server: ForkServerProcess

    def close(self) -> None:
        os.close(self.lock_fd)
        os.close(self.ready_fd)


def _log_abandoned_start(task: asyncio.Task[Any]) -> None:
    """Say why a start or staging whose caller stopped waiting for it failed
    (one that succeeds says so itself)."""
    if not task.cancelled() and (error := task.exception()) is not None:
        log.warning("event=start_failed error=%r", str(error))


async def _read_to_eof(fd: int) -> bytes:
    loop = asyncio.get_running_loop()
    eof = loop.create_future()
    said = bytearray()

    def readable() -> None:
        try:
            data = os.read(fd, 4096)
        except BlockingIOError:
            return
        said.extend(data)
        if not data and not eof.done():
            eof.set_result(None)

    os.set_blocking(fd, False)
    loop.add_reader(fd, readable)
    try:
        await eof
    finally:
        loop.remove_reader(fd)
    return bytes(said)


def _starting(status: RunStatus) -> bool:
    return status.state is RunState.STAGED or (status.state is RunState.RUNNING
                                                and status.pid is None)


class _BatchPipe:
    """The read end of a batch supervisor's handshake pipe, and what it said."""

    def __init__(self, batch_dir: Path, fd: int) -> None:
        self.batch_dir = batch_dir
        self.fd: int | None = fd
        self.said = b""
        self.releases = 0  # RELEASED_LINEs waited for so far

    @property
    def pid(self) -> int | None:
        """The batch supervisor's, once it said that its launches are staged."""
        for line in self.said.splitlines():
            if line.startswith(batch.STAGED_LINE + b" "):
                return int(line.split()[1])
        return None

    async def until(self, line: bytes, count: int, within: float) -> bytes:
        """What was said, once ``line`` was said ``count`` times, or at EOF, or
        after ``within`` seconds."""
        if self.fd is None or self.said.count(line) >= count:
            return self.said
        fd = self.fd
        loop = asyncio.get_running_loop()
        done = loop.create_future()

        def readable() -> None:
            try:
                data = os.read(fd, 4096)
            except BlockingIOError:
                return
            self.said += data
            if (not data or self.said.count(line) >= count) and not done.done():
                done.set_result(None)

        os.set_blocking(fd, False)
        loop.add_reader(fd, readable)
        try:
            async with asyncio.timeout(within):
                await done
        except TimeoutError:
            log.warning("event=batch_slow waited=%s", within)
        finally:
            loop.remove_reader(fd)
        return self.said

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class LocalExecutor(Executor):
    """Runs launches as processes on this machine; see the module docstring.

    ``grace`` is the default time between SIGTERM and SIGKILL, at a timeout and
    on ``stop``. ``poll_interval`` is how often ``wait`` looks at a run.
    ``start_timeout`` bounds how long ``start`` waits for a supervisor to start
    the job; after it, ``start`` returns the run as ``RUNNING`` (starting).
    """

    name = "local"
    stages = True

    def __init__(self, run_dir: Path, grace: float = 10.0, *,
                 base_env: Mapping[str, str] | None = None, poll_interval: float = 0.2,
                 start_timeout: float = 30.0) -> None:
        self.run_dir = Path(run_dir).absolute()
        self.location = f"{socket.gethostname()}:{self.run_dir}"
        self._grace = grace
        self._base_env = dict(default_base_env() if base_env is None else base_env)
        self._poll_interval = poll_interval
        self._start_timeout = start_timeout
        self._fork_server = ForkServer(self.run_dir, send_timeout=start_timeout)
        self._starting: set[asyncio.Task[RunStatus]] = set()
        # Stagings under way, by launch id: a release waits for its launch's.
        self._staging: dict[str, asyncio.Task[list[RunStatus | ExecutorError]]] = {}
        self._batches: dict[str, _BatchPipe] = {}  # staged launch id -> its batch's pipe
        self._holding: set[str] = set()  # staged launch ids whose batches hold their shells

    async def start(self, request: LaunchRequest) -> RunStatus:
        # Once claimed, a launch must reach a supervisor, or be let go of, even
        # if this call is cancelled: that happens in a task of its own.
        task = asyncio.ensure_future(self._start(request))
        self._starting.add(task)
        task.add_done_callback(self._starting.discard)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            task.add_done_callback(_log_abandoned_start)
            raise

    async def _start(self, request: LaunchRequest) -> RunStatus:
        launch_id = request.launch_id
        spec = rundir.RunSpec(request, self._base_env, self._grace)
        handoff = await self._io(f"start launch {launch_id!r}", self._claim_and_hand_off,
                                 spec)
        if handoff is None:
            status = await self.query(launch_id)
            if status.state is RunState.STAGED:
                [result] = await self._release(
                    [request], f"launch {launch_id!r} is staged here but its batch "
                               "supervisor could not be told to start it")
                if isinstance(result, ExecutorError):
                    raise result
                return result
            if status.state is RunState.NOT_FOUND:
                raise ExecutorError(
                    f"launch {launch_id!r}: another start of it failed, or its run was "
                    "pruned, meanwhile; nothing was started, and starting again is safe")
            log.info("event=start_skipped launch_id=%s state=%s", launch_id,
                     status.state.value)
            return status
        try:
            await self._until_started(launch_id, handoff)
        finally:
            handoff.close()
        status = await self.query(launch_id)
        if status.state is RunState.NOT_FOUND:
            raise ExecutorError(
                f"launch {launch_id!r}: its supervisor exited before starting the job; "
                f"nothing was started, and starting again is safe; see "
                f"{rundir.run_of(self.run_dir, launch_id).path / rundir.LOG}")
        log.info("event=run_started launch_id=%s state=%s pid=%s", launch_id,
                 status.state.value, status.pid)
        return status

    def _claim_and_hand_off(self, spec: rundir.RunSpec) -> _Handoff | None:
        """Claim the launch and send it to the fork server; None when the launch is
        someone else's."""
        lock_fd = rundir.claim(self.run_dir, spec)
        if lock_fd is None:
            return None
        run_path = rundir.run_of(self.run_dir, spec.request.launch_id).path
        try:
            ready_fd, server = self._send(run_path, lock_fd, None)
        except BaseException:
            # Nobody holds the lock now: the run reads as never started.
            os.close(lock_fd)
            raise
        return _Handoff(lock_fd, ready_fd, server)

    def _send(self, run_path: Path, lock_fd: int,
              replacing: ForkServerProcess | None) -> tuple[int, ForkServerProcess]:
        """Send the launch with a new handshake pipe; returns its read end."""
        ready_fd, write_fd = os.pipe()
        try:
            server = self._fork_server.hand_off(run_path, lock_fd, write_fd, replacing)
        except BaseException:
            os.close(ready_fd)
            raise
        finally:
            os.close(write_fd)  # the fork server has its own copy, or nobody needs one
        return ready_fd, server

    def _send_again(self, run_path: Path, lock_copy: int,
                    replacing: ForkServerProcess) -> tuple[int, ForkServerProcess]:
        # The thread owns its copy of the lock: it must not use a descriptor
        # that the coroutine waiting for it may close meanwhile.
        try:
            return self._send(run_path, lock_copy, replacing)
        finally:
            os.close(lock_copy)

    async def _until_started(self, launch_id: str, handoff: _Handoff) -> None:
        """Wait until the supervisor has started the job (or found it cannot, or
        died), sending the launch again if its fork server let it go unforked."""
        run_path = rundir.run_of(self.run_dir, launch_id).path
        for attempt in range(1, SEND_ATTEMPTS + 1):
            said = await self._handshake(launch_id, handoff.ready_fd)
            if said is None:  # slow: the run reads "starting" meanwhile
                return
            if said.startswith(FORK_FAILED):
                raise ExecutorError(
                    f"launch {launch_id!r}: cannot fork its supervisor "
                    f"({said[len(FORK_FAILED):].decode(errors='replace').strip()}); "
                    "nothing was started, and starting again is safe")
            if said:  # a supervisor was forked: the run directory says the rest
                return
            # Nothing came back: the fork server let go of the launch without
            # forking it (it died). Our copy of the lock says that nobody else
            # has started it since, nor can.
            log.warning("event=launch_unforked launch_id=%s fork_server=%d attempt=%d",
                        launch_id, handoff.server.pid, attempt)
            if attempt == SEND_ATTEMPTS:
                break
            ready_fd, handoff.server = await self._io(
                f"start launch {launch_id!r}", self._send_again, run_path,
                os.dup(handoff.lock_fd), handoff.server)
            os.close(handoff.ready_fd)
            handoff.ready_fd = ready_fd
        raise ExecutorError(
            f"launch {launch_id!r}: {SEND_ATTEMPTS} fork servers in a row died before "
            "forking its supervisor; nothing was started, and starting again is safe")

    async def _handshake(self, launch_id: str, ready_fd: int) -> bytes | None:
        """What the fork server and the supervisor wrote on the handshake pipe once
        both let go of it; None if that takes longer than ``start_timeout``."""
        try:
            async with asyncio.timeout(self._start_timeout):
                return await _read_to_eof(ready_fd)
        except TimeoutError:
            log.warning("event=start_slow launch_id=%s timeout=%s", launch_id,
                        self._start_timeout)
            return None

    async def stage(self, requests: Sequence[LaunchRequest], release_by: datetime
                    ) -> list[RunStatus | ExecutorError]:
        """Claim the launches and hand them, :data:`~distcron.executors.batch.BATCH_SIZE`
        at a time, to batch supervisors that hold them until released (see
        :mod:`distcron.executors.batch`). Nothing is made durable: a staged
        launch that a crash takes away was never started.

        Once claimed, a launch must reach its batch supervisor or be let go of,
        even if this call is cancelled (the term that asked ended): that happens
        in a task of its own, which a release of the same launch waits for."""
        task = asyncio.ensure_future(self._stage_all(requests, release_by))
        for request in requests:
            self._staging[request.launch_id] = task
        task.add_done_callback(lambda done: self._staged(requests, done))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            task.add_done_callback(_log_abandoned_start)
            raise

    def _staged(self, requests: Sequence[LaunchRequest],
                task: asyncio.Task[list[RunStatus | ExecutorError]]) -> None:
        for request in requests:
            if self._staging.get(request.launch_id) is task:
                del self._staging[request.launch_id]

    async def _stage_all(self, requests: Sequence[LaunchRequest], release_by: datetime
                         ) -> list[RunStatus | ExecutorError]:
        results: dict[str, RunStatus | ExecutorError] = {}
        chunks = [requests[n:n + batch.BATCH_SIZE]
                  for n in range(0, len(requests), batch.BATCH_SIZE)]
        prestart = []
        for chunk in chunks:  # taken now, before any other staging can take them
            prestart.append(len(self._holding) + len(chunk) <= PRESTART_LIMIT)
            if prestart[-1]:
                self._holding.update(request.launch_id for request in chunk)
        # Side by side: claiming is file-system work, mostly waiting.
        for chunk_results in await asyncio.gather(
                *(self._stage_chunk(chunk, release_by, held)
                  for chunk, held in zip(chunks, prestart, strict=True))):
            results.update(chunk_results)
        for launch_id, result in results.items():
            if isinstance(result, ExecutorError) or result.state is not RunState.STAGED:
                self._holding.discard(launch_id)
        return [results[request.launch_id] for request in requests]

    async def _stage_chunk(self, requests: Sequence[LaunchRequest], release_by: datetime,
                           prestart: bool) -> dict[str, RunStatus | ExecutorError]:
        results: dict[str, RunStatus | ExecutorError] = {}
        batch_dir = self.run_dir / f"{rundir.BATCH_PREFIX}{secrets.token_hex(8)}"
        try:
            claimed, known = await self._io("stage launches", self._claim_all, requests,
                                            batch_dir.name)
            by_id = {request.launch_id: request for request in requests}
            foreign = await self._io("stage launches", self._let_go_foreign,
                                     [by_id[launch_id] for launch_id in known])
            if foreign:  # let go now: claimed for this store like the others
                again, still = await self._io(
                    "stage launches", self._claim_all, [by_id[i] for i in foreign],
                    batch_dir.name)
                claimed += again
                known = [i for i in known if i not in foreign] + still
        except ExecutorError as exc:
            return {request.launch_id: exc for request in requests}
        for launch_id in known:
            results[launch_id] = await self.query(launch_id)
        if claimed:
            error = await self._stage_batch(batch_dir, claimed, release_by, prestart)
            for request, _ in claimed:
                results[request.launch_id] = error or RunStatus(request.launch_id,
                                                                RunState.STAGED)
        return results

    def _let_go_foreign(self, requests: Sequence[LaunchRequest]) -> list[str]:
        """Let go of launches staged here for another incarnation of the store (its
        file was made again, say): this one's intent is new, and the job must see
        this store's identity and fence, so it is staged again, never released
        under the old request. Waits (at most the start timeout) until they are;
        returns their launch ids."""
        foreign = []
        for request in requests:
            run = rundir.run_of(self.run_dir, request.launch_id)
            spec = run.spec()
            if (spec is not None and spec.request.store_id != request.store_id
                    and rundir.read_status(self.run_dir, request.launch_id).state
                    is RunState.STAGED):
                foreign.append(request.launch_id)
        if not foreign:
            return foreign
        log.warning("event=stage_foreign_let_go launches=%d", len(foreign))
        rundir.request_unstage(self.run_dir, foreign)
        deadline = time.monotonic() + self._start_timeout
        while time.monotonic() < deadline and any(
                rundir.read_status(self.run_dir, launch_id).state is RunState.STAGED
                for launch_id in foreign):
            time.sleep(self._poll_interval / 20)
        return foreign

    def _claim_all(self, requests: Sequence[LaunchRequest], batch_name: str
                   ) -> tuple[list[tuple[LaunchRequest, int]], list[str]]:
        claimed, known = [], []
        for request in requests:
            spec = rundir.RunSpec(request, self._base_env, self._grace)
            lock_fd = rundir.claim(self.run_dir, spec, durable=False, batch=batch_name)
            if lock_fd is None:
                known.append(request.launch_id)
            else:
                claimed.append((request, lock_fd))
        return claimed, known

    async def _stage_batch(self, batch_dir: Path, chunk: list[tuple[LaunchRequest, int]],
                           release_by: datetime, prestart: bool) -> ExecutorError | None:
        """One batch: why none of its launches is staged, or None: all are."""
        lock_fds = [lock_fd for _, lock_fd in chunk]
        try:
            try:
                ready_fd = await self._io("stage a batch", self._send_batch, batch_dir, chunk,
                                          release_by, prestart)
            except ExecutorError as exc:
                return exc
            pipe = _BatchPipe(batch_dir, ready_fd)
            # Two whole lines: "forked", then "staged <pid>".
            said = await pipe.until(b"\n", 2, self._start_timeout)
        finally:
            # The batch supervisor holds the locks now, or nobody does.
            for lock_fd in lock_fds:
                os.close(lock_fd)
        if pipe.pid is None:
            pipe.close()
            return ExecutorError(f"a batch of {len(chunk)} launches was not staged "
                                 f"({said.decode(errors='replace').strip() or 'no answer'}); "
                                 "nothing of them was started")
        for request, _ in chunk:
            self._batches[request.launch_id] = pipe
            log.info("event=run_staged launch_id=%s", request.launch_id)
        return None

    def _send_batch(self, batch_dir: Path, chunk: list[tuple[LaunchRequest, int]],
                    release_by: datetime, prestart: bool) -> int:
        batch_dir.mkdir(mode=0o700)
        names = [rundir.dir_name(request.launch_id) for request, _ in chunk]
        (batch_dir / rundir.BATCH_LIST).write_text(json.dumps(
            {"runs": names, "release_by": release_by.timestamp(), "prestart": prestart}))
        ready_fd, write_fd = os.pipe()
        try:
            self._fork_server.hand_off_batch(batch_dir, write_fd, [fd for _, fd in chunk])
        except BaseException:
            os.close(ready_fd)
            raise
        finally:
            os.close(write_fd)
        return ready_fd

    async def release(self, requests: Sequence[LaunchRequest]
                      ) -> list[RunStatus | ExecutorError]:
        """Start staged launches at once (whoever staged them); any other as
        ``start`` would."""
        return await self._release(requests, None)

    async def _release(self, requests: Sequence[LaunchRequest], unstaged: str | None
                       ) -> list[RunStatus | ExecutorError]:
        """``release``; but with ``unstaged``, a launch found not staged (any
        more) is not started: it fails with that reason (``start`` asks this,
        and must not be asked again)."""
        if stagings := {self._staging[r.launch_id] for r in requests
                        if r.launch_id in self._staging}:
            await asyncio.wait(stagings)  # not cancelled with this call
        by_batch: dict[_BatchPipe, list[str]] = defaultdict(list)
        for request in requests:
            if (pipe := self._batches.get(request.launch_id)) is not None:
                by_batch[pipe].append(request.launch_id)
        told = await self._io("release launches", self._tell_all, requests, by_batch)
        pipes = {self._batches[r.launch_id] for r, ok in zip(requests, told, strict=True)
                 if ok and r.launch_id in self._batches}
        for pipe in pipes:
            # Signals can merge two releases into one: past this, _settled looks.
            await pipe.until(batch.RELEASED_LINE, pipe.releases + 1, RELEASE_WAIT)
            pipe.releases += 1
        results: dict[str, RunStatus | ExecutorError] = {}
        released = [r.launch_id for r, ok in zip(requests, told, strict=True) if ok]
        for launch_id, status in zip(released, await self._settled(released), strict=True):
            self._forget_staged(launch_id)
            if status.state is not RunState.NOT_FOUND:
                results[launch_id] = status
                log.info("event=run_started launch_id=%s state=%s pid=%s", launch_id,
                         status.state.value, status.pid)
        # Not staged (any more): let go at its deadline, or never staged here.
        for request in requests:
            if request.launch_id not in results and unstaged is not None:
                results[request.launch_id] = ExecutorError(
                    f"{unstaged}; nothing was started, and starting again is safe")
            elif request.launch_id not in results:
                try:
                    results[request.launch_id] = await self.start(request)
                except ExecutorError as exc:
                    results[request.launch_id] = exc
        return [results[request.launch_id] for request in requests]

    def _tell_all(self, requests: Sequence[LaunchRequest],
                  by_batch: Mapping[_BatchPipe, list[str]]) -> list[bool]:
        """Tell each batch this executor staged at once; any other launch by its
        own marker. Per launch, whether it was staged when told."""
        told: set[str] = set()
        batches = []
        for pipe, launch_ids in by_batch.items():
            assert pipe.pid is not None  # only staged batches are kept
            batches.append((pipe.batch_dir, pipe.pid,
                            [rundir.dir_name(launch_id) for launch_id in launch_ids]))
        for launch_ids, ok in zip(by_batch.values(), rundir.release_batches(batches),
                                  strict=True):
            if ok:
                told.update(launch_ids)
        others = [r.launch_id for r in requests if r.launch_id not in told]
        told.update(launch_id for launch_id, ok in zip(
            others, rundir.request_release(self.run_dir, others), strict=True) if ok)
        return [request.launch_id in told for request in requests]

    async def _settled(self, launch_ids: list[str]) -> list[RunStatus]:
        """Their statuses once each is past staging and starting (or after the
        start timeout: then as they are)."""
        deadline = asyncio.get_running_loop().time() + self._start_timeout
        while True:
            statuses = await self._io("read released launches", self._read_all, launch_ids)
            if (asyncio.get_running_loop().time() > deadline
                    or not any(_starting(status) for status in statuses)):
                return statuses
            await asyncio.sleep(self._poll_interval / 20)

    def _read_all(self, launch_ids: list[str]) -> list[RunStatus]:
        return [rundir.read_status(self.run_dir, launch_id) for launch_id in launch_ids]

    async def unstage(self, launch_ids: Sequence[str]) -> None:
        await self._io("unstage launches", rundir.request_unstage, self.run_dir, launch_ids)
        for launch_id in launch_ids:
            self._forget_staged(launch_id)

    def _forget_staged(self, launch_id: str) -> None:
        self._holding.discard(launch_id)
        pipe = self._batches.pop(launch_id, None)
        if pipe is not None and pipe not in self._batches.values():
            pipe.close()

    async def query(self, launch_id: str) -> RunStatus:
        return await self._io(f"read the status of launch {launch_id!r}",
                              rundir.read_status, self.run_dir, launch_id)

    async def wait(self, launch_id: str) -> RunStatus:
        # Supervisors are not our children, so there is no exit to wait on:
        # poll the run directory (a shared flock and a few small files).
        while True:
            status = await self.query(launch_id)
            if status.state is not RunState.RUNNING:
                return status
            await asyncio.sleep(self._poll_interval)

    async def stop(self, launch_id: str, grace: float | None = None) -> RunStatus:
        status = await self.query(launch_id)
        if status.state is not RunState.RUNNING:
            return status
        grace = self._grace if grace is None else grace
        log.info("event=stop_requested launch_id=%s grace=%s", launch_id, grace)
        await self._io(f"stop launch {launch_id!r}", rundir.request_stop, self.run_dir,
                       launch_id, grace)
        return await self.wait(launch_id)

    async def output(self, launch_id: str) -> bytes:
        return await self._io(f"read the output of launch {launch_id!r}",
                              self._read_output, launch_id)

    def _read_output(self, launch_id: str) -> bytes:
        run = rundir.run_of(self.run_dir, launch_id)
        spec = run.spec()
        return b"" if spec is None else read_output(run, spec.request.output_limit)

    async def prune(self, before: datetime) -> list[str]:
        """Forget runs that are not live and whose last change (usually their
        end) is older than ``before``; returns their launch ids. A pruned launch
        is unknown to the executor: prune only what the store has recorded as
        ended, or a later ``start`` with its id would run it again."""
        removed = await self._io(f"prune {self.run_dir}", rundir.prune, self.run_dir,
                                 before)
        for launch_id in removed:
            log.info("event=run_pruned launch_id=%s", launch_id)
        return removed

    async def close(self) -> None:
        """Let starts under way finish handing their launches over, then let the
        fork server go (it exits once it has forked what it was sent). Runs are
        not stopped: they go on, and a later executor adopts them."""
        while self._starting or self._staging:
            await asyncio.wait({*self._starting, *self._staging.values()})
        for launch_id in list(self._batches):
            self._forget_staged(launch_id)
        await asyncio.to_thread(self._fork_server.close)

    async def _io(self, what: str, func: Callable[_P, _T], *args: _P.args,
                  **kwargs: _P.kwargs) -> _T:
        """Run blocking file work off the event loop; OSError becomes ExecutorError."""
        try:
            return await asyncio.to_thread(func, *args, **kwargs)
        except OSError as exc:
            raise ExecutorError(f"cannot {what}: {exc}") from exc
