"""A burst of launches costs the store a few transactions, not a few per launch:
the claims (and, apart, the reports) of one moment go out as one transaction
per chunk, with exactly the outcomes of per-launch ones; and the registration
rewrites a changing running count at most once a second, its lease renewals
never held back by the rewrites.

The real agent in this process, on the SQLite store file, through a store
that records every transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from distcron.clock import SystemClock
from distcron.errors import StoreUnavailable
from distcron.executors.base import RunState
from distcron.executors.local import LocalExecutor
from distcron.store import Compare, Delete, Op, Put, Store, TxnResult
from distcron.store.layout import (
    CLAIMS,
    REPORTS,
    assignment_key,
    claim_key,
    output_key,
    report_key,
    worker_key,
)
from distcron.worker.agent import WorkerAgent, WorkerConfig
from distcron.worker.protocol import stop_value
from distcron.worker.registration import CHANGED_EVERY, Registration, RegistrationConfig
from tests.interposing_store import InterposingStore
from tests.waiting import eventually

from .conftest import (
    assignment,
    claim,
    final_report,
    ledger,
    ledger_command,
    registration,
    report,
    request,
)

pytestmark = pytest.mark.anyio


@dataclass
class _Txn:
    compare: Sequence[Compare]
    success: Sequence[Op]
    succeeded: bool | None = None  # None: it raised

    def puts(self, prefix: str) -> list[str]:
        return [op.key for op in self.success if isinstance(op, Put) and op.key.startswith(prefix)]


class RecordingStore(InterposingStore):
    """The real store, recording each transaction and counting lease renewals."""

    def __init__(self, inner: Store, max_txn_ops: int | None = None) -> None:
        super().__init__(inner)
        self.max_txn_ops = max_txn_ops
        self.txns: list[_Txn] = []
        self.keepalives = 0

    async def txn(self, compare: Sequence[Compare], success: Sequence[Op],
                  failure: Sequence[Op] = ()) -> TxnResult:
        record = _Txn(tuple(compare), tuple(success))
        self.txns.append(record)
        result = await super().txn(compare, success, failure)
        record.succeeded = result.succeeded
        return result

    async def lease_keepalive(self, lease_id: int) -> float:
        self.keepalives += 1
        return await super().lease_keepalive(lease_id)

    def writing(self, prefix: str) -> list[_Txn]:
        return [txn for txn in self.txns if txn.puts(prefix)]


class Gathered:
    """Holds each return of one executor method until the test lets them all go
    in the same moment, as a burst's would be on a busy worker."""

    def __init__(self, executor: LocalExecutor, name: str) -> None:
        self.arrived = 0
        self.go = asyncio.Event()
        real = getattr(executor, name)

        async def held(*args: Any) -> Any:
            result = await real(*args)
            self.arrived += 1
            await self.go.wait()
            return result
        setattr(executor, name, held)

    async def release(self, count: int) -> None:
        await eventually(lambda: self.arrived == count, 20, f"{count} calls held")
        self.go.set()


def _no_live_output(monkeypatch: pytest.MonkeyPatch) -> None:
    """No copies of running output (they read it too): only final reports do."""
    monkeypatch.setattr("distcron.worker.runner.LIVE_OUTPUT_EVERY", 3600.0)


@contextlib.asynccontextmanager
async def _worker(store: Store, tmp_path: Path, slots: int) -> AsyncIterator[LocalExecutor]:
    executor = LocalExecutor(tmp_path / "runs", poll_interval=0.02)
    agent = WorkerAgent(store, executor, WorkerConfig("w1", slots=slots, lease_ttl=1.0),
                        SystemClock())
    done = asyncio.Event()
    running = asyncio.create_task(agent.run(done))
    try:
        await eventually(lambda: registration(store, "w1"), 10, "the worker to register")
        yield executor
    finally:
        done.set()
        await running
        await executor.close()


async def _assign_all(store: Store, launch_ids: list[str], book: Path,
                      gate: Path | None = None) -> None:
    """What the leader writes for a burst: every assignment in one transaction.
    The runs last until ``gate`` exists, if given."""
    await store.txn((), [Put(assignment_key("w1", launch_id),
                             assignment(request(launch_id, ledger_command(book, gate))))
                         for launch_id in launch_ids])


def _ids(count: int) -> list[str]:
    return [f"job{n:03}@2026-11-24T06:00:00Z" for n in range(count)]


async def _reported_running(store: Store, launch_ids: list[str]) -> None:
    async def all_running() -> bool:
        for launch_id in launch_ids:
            found = await report(store, launch_id)
            if found is None or found.run_status().state is not RunState.RUNNING:
                return False
        return True
    await eventually(all_running, 10, "every run reported running")


def _claimed_once(store: RecordingStore, launch_ids: list[str]) -> None:
    applied = [key for txn in store.writing(CLAIMS) if txn.succeeded for key in txn.puts(CLAIMS)]
    assert sorted(applied) == sorted(claim_key(launch_id) for launch_id in launch_ids)


def _ran_once(book: Path, launch_ids: list[str]) -> None:
    assert sorted(line for line in ledger(book) if line.startswith("start ")) == sorted(
        f"start {launch_id}" for launch_id in launch_ids)


async def test_a_burst_is_claimed_and_reported_in_chunks_within_the_stores_limit(
        store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _no_live_output(monkeypatch)
    limit = 16  # as an etcd with --max-txn-ops=16
    recording = RecordingStore(store, max_txn_ops=limit)
    book, gate, launch_ids = tmp_path / "ledger", tmp_path / "gate", _ids(20)
    async with _worker(recording, tmp_path, slots=20) as executor:
        started, ended = Gathered(executor, "start"), Gathered(executor, "output")
        await _assign_all(store, launch_ids, book, gate)
        await started.release(20)
        await _reported_running(store, launch_ids)
        gate.touch()
        await ended.release(20)
        for launch_id in launch_ids:
            status = (await final_report(store, launch_id)).run_status()
            assert status.state is RunState.SUCCEEDED

    claims = recording.writing(CLAIMS)
    # A lease compare, then two per claim: 7 claims a transaction.
    assert [len(txn.puts(CLAIMS)) for txn in claims] == [7, 7, 6]
    assert all(txn.succeeded for txn in claims)
    _claimed_once(recording, launch_ids)
    _ran_once(book, launch_ids)
    reports = [len(txn.puts(REPORTS)) for txn in recording.writing(REPORTS)]
    # Running reports: one compare, one put each; final ones put the output too.
    assert reports == [16, 4, 8, 8, 4]
    assert all(len(txn.compare) <= limit and len(txn.success) <= limit
               for txn in recording.txns)


async def test_a_claim_batch_failed_by_a_stop_and_a_deletion_claims_the_others(
        store: Store, tmp_path: Path) -> None:
    book, launch_ids = tmp_path / "ledger", _ids(8)
    stopped, deleted, others = launch_ids[0], launch_ids[1], launch_ids[2:]
    recording = RecordingStore(store)
    recording.when = lambda success: any(
        isinstance(op, Put) and op.key.startswith(CLAIMS) for op in success)

    async def leader_acts(inner: Store) -> None:
        # Between the worker's read of the assignments and its claims.
        await inner.txn((), [Put(assignment_key("w1", stopped), stop_value(stopped)),
                             Delete(assignment_key("w1", deleted))])
    recording.before_txn = leader_acts

    async with _worker(recording, tmp_path, slots=8):
        await _assign_all(store, launch_ids, book)
        for launch_id in others:
            status = (await final_report(store, launch_id)).run_status()
            assert status.state is RunState.SUCCEEDED
        status = (await final_report(store, stopped)).run_status()
        assert status.state is RunState.STOPPED and "before it started" in status.reason

    first = recording.writing(CLAIMS)[0]
    assert sorted(first.puts(CLAIMS)) == sorted(map(claim_key, launch_ids))
    assert first.succeeded is False
    # Each then claimed as it would have been alone: the stop as a stop, the
    # deleted one not at all.
    _claimed_once(recording, [stopped, *others])
    assert await claim(store, deleted) is None and await report(store, deleted) is None
    _ran_once(book, others)


async def test_a_claim_batch_applied_but_unanswered_is_adopted_and_each_runs_once(
        store: Store, tmp_path: Path) -> None:
    book, launch_ids = tmp_path / "ledger", _ids(6)

    class Unanswered(RecordingStore):
        """Applies the first claims, then says it did not answer in time."""

        answered = False

        async def txn(self, compare: Sequence[Compare], success: Sequence[Op],
                      failure: Sequence[Op] = ()) -> TxnResult:
            result = await super().txn(compare, success, failure)
            if not self.answered and any(
                    isinstance(op, Put) and op.key.startswith(CLAIMS) for op in success):
                self.answered = True
                raise StoreUnavailable("no answer in 2s")  # as a flooded etcd says
            return result

    recording = Unanswered(store)
    async with _worker(recording, tmp_path, slots=6):
        await _assign_all(store, launch_ids, book)
        for launch_id in launch_ids:
            status = (await final_report(store, launch_id)).run_status()
            assert status.state is RunState.SUCCEEDED

    first = recording.writing(CLAIMS)[0]
    assert len(first.puts(CLAIMS)) == 6 and first.succeeded
    _claimed_once(recording, launch_ids)
    _ran_once(book, launch_ids)


async def test_reports_are_batched_and_one_whose_assignment_is_gone_is_dropped(
        store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    _no_live_output(monkeypatch)
    caplog.set_level("INFO", logger="distcron.worker")
    book, gate, launch_ids = tmp_path / "ledger", tmp_path / "gate", _ids(10)
    gone, others = launch_ids[0], launch_ids[1:]
    recording = RecordingStore(store)
    async with _worker(recording, tmp_path, slots=10) as executor:
        started, ended = Gathered(executor, "start"), Gathered(executor, "output")
        await _assign_all(store, launch_ids, book, gate)
        await started.release(10)
        await _reported_running(store, launch_ids)
        # The leader deleted one assignment before the final reports (it gave
        # up on the run: the report would be litter).
        await store.delete(assignment_key("w1", gone))
        gate.touch()
        await ended.release(10)
        for launch_id in others:
            status = (await final_report(store, launch_id)).run_status()
            assert status.state is RunState.SUCCEEDED
        await eventually(lambda: f"event=report_dropped launch_id={gone}" in caplog.text, 10,
                         "the report to be dropped")

    reports = recording.writing(REPORTS)
    # Running reports in one transaction; the final ones in one that failed,
    # then each alone.
    assert [(len(txn.puts(REPORTS)), txn.succeeded) for txn in reports[:2]] == [
        (10, True), (10, False)]
    assert sorted(key for txn in reports[2:] for key in txn.puts(REPORTS)) == sorted(
        map(report_key, launch_ids))
    assert [txn.succeeded for txn in reports[2:]].count(False) == 1
    dropped = await report(store, gone)
    assert dropped is not None and dropped.run_status().state is RunState.RUNNING
    assert await store.get(output_key(gone)) is None
    for launch_id in others:
        assert f"event=reported launch_id={launch_id} state=succeeded" in caplog.text
    assert "event=reports_batched worker=w1 count=10 held=True" in caplog.text


@contextlib.asynccontextmanager
async def _registered(store: RecordingStore, running: list[int], ttl: float
                      ) -> AsyncIterator[Registration]:
    held = Registration(
        store, RegistrationConfig("w1", slots=1000, ttl=ttl, info_interval=600.0),
        SystemClock(), running=lambda: running[0], on_registered=lambda: None)
    holding = asyncio.create_task(held.run())
    try:
        await eventually(held.alive, 10, "the worker to register")
        yield held
    finally:
        holding.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await holding
        await held.leave()


def _rewrites(store: RecordingStore) -> int:
    """Info rewrites: registration writes guarded by the lease (not the first write)."""
    return sum(1 for txn in store.writing(worker_key("w1"))
               if not any(c == Compare.missing(worker_key("w1")) for c in txn.compare))


async def test_a_storm_of_running_count_changes_rewrites_the_info_about_once_a_second(
        store: Store) -> None:
    recording, running = RecordingStore(store), [0]
    async with _registered(recording, running, ttl=0.6) as registered:
        begun, renewed = asyncio.get_running_loop().time(), recording.keepalives

        async def storm() -> None:
            while True:
                running[0] += 1
                registered.changed()
                await asyncio.sleep(0.002)  # the storm's pace: hundreds a second
        storming = asyncio.create_task(storm())
        try:
            # Renewals every 0.2 s go on: 2.4 s of storm.
            await eventually(lambda: recording.keepalives >= renewed + 12, 10,
                             "12 renewals during the storm")
        finally:
            storming.cancel()
        lasted = asyncio.get_running_loop().time() - begun
        assert running[0] > 200
        assert 1 <= _rewrites(recording) <= math.ceil(lasted / CHANGED_EVERY) + 1
        # The last count is written too, within a second.
        await _written(store, running[0], within=CHANGED_EVERY + 2)
        assert registered.alive()


async def test_a_rewrite_the_store_does_not_answer_does_not_hold_back_renewals(
        store: Store) -> None:
    recording, running = RecordingStore(store), [0]
    async with _registered(recording, running, ttl=0.6) as registered:
        _, lease = await eventually(lambda: registration(store, "w1"), 10, "a registration")
        answer = asyncio.Event()

        async def unanswered(inner: Store) -> None:
            await answer.wait()
        recording.when = lambda success: any(
            isinstance(op, Put) and op.key == worker_key("w1") for op in success)
        recording.before_txn = unanswered
        running[0] = 1
        registered.changed()
        await eventually(lambda: _rewrites(recording) == 1, 5, "the rewrite to be sent")
        renewed = recording.keepalives
        # Three TTLs of renewals while the rewrite hangs.
        await eventually(lambda: recording.keepalives >= renewed + 9, 10,
                         "renewals behind the hung rewrite")
        assert registered.alive()
        current = await registration(store, "w1")
        assert current is not None and current[1] == lease
        answer.set()
        await _written(store, 1, within=5)


async def _written(store: Store, running: int, within: float) -> None:
    async def written() -> bool:
        current = await registration(store, "w1")
        return current is not None and current[0].running == running
    await eventually(written, within, f"the running count {running} written")
