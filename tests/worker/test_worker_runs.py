"""A worker claims what it is assigned, runs each launch once, and reports it."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from distcron.executors.base import RunState, RunStatus
from distcron.store import Delete, Put, Store
from distcron.store.layout import assignment_key, claim_key, output_key, report_key
from distcron.worker.protocol import Claim, Report
from tests.waiting import eventually

from .conftest import (
    Workers,
    assign,
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


async def _running(store: Store, worker_id: str, count: int) -> None:
    async def holds() -> bool:
        current = await registration(store, worker_id)
        return current is not None and current[0].running == count
    await eventually(holds, 10, f"worker {worker_id} to say it runs {count}")


async def _reported_running(store: Store, launch_id: str) -> Report:
    async def running() -> Report | None:
        found = await report(store, launch_id)
        return found if found and found.run_status().state is RunState.RUNNING else None
    return await eventually(running, 10, f"a running report of {launch_id}")


def _most_at_once(lines: list[str]) -> int:
    live = most = 0
    for line in lines:
        live += 1 if line.startswith("start ") else -1
        most = max(most, live)
    return most


async def test_an_assigned_launch_is_claimed_run_and_reported_running_then_succeeded(
        store: Store, workers: Workers, tmp_path: Path) -> None:
    worker = workers("w1")
    await _running(store, "w1", 0)
    gate = tmp_path / "gate"
    launch = request("backup@2026-11-24T06:00:00Z",
                     ledger_command(tmp_path / "ledger", gate, then="echo all-done; exit 0"))
    await assign(store, "w1", launch)

    started = (await _reported_running(store, launch.launch_id)).run_status()
    assert started.pid is not None and started.started_at is not None
    claimed = await claim(store, launch.launch_id)
    assert claimed is not None and claimed.worker == "w1" and claimed.claimed_at
    await _running(store, "w1", 1)

    gate.touch()
    ended = await final_report(store, launch.launch_id)
    assert ended.worker == "w1"
    status = ended.run_status()
    assert (status.state, status.exit_code, status.pid) == (RunState.SUCCEEDED, 0, started.pid)
    output = await store.get(output_key(launch.launch_id))
    assert output is not None and output.value == b"all-done\n"
    assert ledger(tmp_path / "ledger") == [f"start {launch.launch_id}",
                                           f"end {launch.launch_id}"]
    await _running(store, "w1", 0)

    # The leader records the outcome and cleans up; the worker forgets the run.
    await store.txn((), [Delete(assignment_key("w1", launch.launch_id)),
                         Delete(claim_key(launch.launch_id)),
                         Delete(report_key(launch.launch_id))])
    await worker.logged(f"event=unassigned launch_id={launch.launch_id}")


async def test_two_workers_assigned_the_same_launch_run_it_once(
        store: Store, workers: Workers, tmp_path: Path) -> None:
    pair = {"w1": workers("w1"), "w2": workers("w2")}
    for worker_id in pair:
        await _running(store, worker_id, 0)
    launch = request("backup@2026-11-24T06:00:00Z", ledger_command(tmp_path / "ledger"))
    # A leader bug: the same launch given to both, at once.
    body = assignment(launch)
    await store.txn((), [Put(assignment_key(w, launch.launch_id), body) for w in pair])

    ended = await final_report(store, launch.launch_id)
    winner = await claim(store, launch.launch_id)
    assert winner is not None and ended.worker == winner.worker
    loser = pair["w2" if winner.worker == "w1" else "w1"]
    await loser.logged(f"event=claimed_elsewhere launch_id={launch.launch_id} "
                       f"owner={winner.worker}")
    assert ledger(tmp_path / "ledger") == [f"start {launch.launch_id}",
                                           f"end {launch.launch_id}"]


async def test_a_worker_never_runs_more_launches_at_once_than_its_slots(
        store: Store, workers: Workers, tmp_path: Path) -> None:
    worker = workers("w1", slots=2)
    await _running(store, "w1", 0)
    book = tmp_path / "ledger"
    gates = {f"job{i}@2026-11-24T06:00:00Z": tmp_path / f"gate{i}" for i in range(3)}
    launches = [request(launch_id, ledger_command(book, gate))
                for launch_id, gate in gates.items()]
    await store.txn((), [Put(assignment_key("w1", launch.launch_id),
                             assignment(launch)) for launch in launches])

    await eventually(lambda: len(ledger(book)) == 2, 10, "two launches to start")
    started = {line.split()[1] for line in ledger(book)}
    (waiting,) = set(gates) - started
    await worker.logged(f"event=assignment_waiting launch_id={waiting} reason=slots_full")
    assert await claim(store, waiting) is None
    await _running(store, "w1", 2)

    gates[sorted(started)[0]].touch()
    await eventually(lambda: f"start {waiting}" in ledger(book), 10, "the third launch to start")
    for gate in gates.values():
        gate.touch()
    for launch_id in gates:
        assert (await final_report(store, launch_id)).run_status().state is RunState.SUCCEEDED
    assert len(ledger(book)) == 6
    assert _most_at_once(ledger(book)) == 2


async def test_an_assignment_deleted_before_it_was_claimed_is_never_run(
        store: Store, workers: Workers, tmp_path: Path) -> None:
    worker = workers("w1", slots=1)
    await _running(store, "w1", 0)
    book, gate = tmp_path / "ledger", tmp_path / "gate"
    first = request("first@2026-11-24T06:00:00Z", ledger_command(book, gate))
    dropped = request("dropped@2026-11-24T06:00:00Z", ledger_command(book))
    last = request("last@2026-11-24T06:00:00Z", ledger_command(book))
    await assign(store, "w1", first)
    await _reported_running(store, first.launch_id)
    await assign(store, "w1", dropped)
    await worker.logged(f"event=assignment_waiting launch_id={dropped.launch_id}")
    await store.delete(assignment_key("w1", dropped.launch_id))
    await worker.logged(f"event=unassigned launch_id={dropped.launch_id}")

    gate.touch()
    # One slot, taken in the order assignments came: had the dropped one been
    # kept, it would run before this one.
    await assign(store, "w1", last)
    await final_report(store, last.launch_id)
    assert await claim(store, dropped.launch_id) is None
    assert await report(store, dropped.launch_id) is None
    assert [line.split()[1] for line in ledger(book)] == [
        first.launch_id, first.launch_id, last.launch_id, last.launch_id]


async def test_a_worker_starts_its_claimed_unstarted_launch_and_reports_lost_one_it_lost(
        store: Store, workers: Workers, tmp_path: Path) -> None:
    """What a worker finds after dying between claim and start, and after losing
    its data directory."""
    book = tmp_path / "ledger"
    unstarted = request("unstarted@2026-11-24T06:00:00Z", ledger_command(book))
    vanished = request("vanished@2026-11-24T06:00:00Z", ledger_command(book))
    mine = Claim(worker="w1", claimed_at="2026-11-24T06:00:01Z").model_dump_json().encode()
    running = Report.of("w1", RunStatus(vanished.launch_id, RunState.RUNNING, pid=4242))
    await store.txn((), [
        Put(assignment_key("w1", unstarted.launch_id), assignment(unstarted)),
        Put(claim_key(unstarted.launch_id), mine),
        Put(assignment_key("w1", vanished.launch_id), assignment(vanished)),
        Put(claim_key(vanished.launch_id), mine),
        Put(report_key(vanished.launch_id), running.to_json())])

    worker = workers("w1")
    assert (await final_report(store, unstarted.launch_id)).run_status().state \
        is RunState.SUCCEEDED
    lost = (await final_report(store, vanished.launch_id)).run_status()
    assert lost.state is RunState.LOST
    assert "run directory" in lost.reason
    assert ledger(book) == [f"start {unstarted.launch_id}", f"end {unstarted.launch_id}"]
    worker.signal(signal.SIGTERM)
    assert await worker.exited() == 0
