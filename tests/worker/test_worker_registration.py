"""A worker is present in the store exactly while it is alive and registered."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

import distcron
from distcron.store import Store
from distcron.store.layout import claim_key, worker_key
from distcron.worker.protocol import WorkerInfo
from tests.waiting import eventually

from .conftest import (
    Workers,
    assign,
    final_report,
    ledger,
    ledger_command,
    registration,
    request,
)

pytestmark = pytest.mark.anyio


async def _registered(store: Store, worker_id: str, *, other_than: int = 0,
                      ) -> tuple[WorkerInfo, int]:
    async def found() -> tuple[WorkerInfo, int] | None:
        current = await registration(store, worker_id)
        return current if current is not None and current[1] != other_than else None
    return await eventually(found, 10, f"worker {worker_id} to register")


async def _unregistered(store: Store, worker_id: str, within: float) -> None:
    async def gone() -> bool:
        return await registration(store, worker_id) is None
    await eventually(gone, within, f"the registration of {worker_id} to vanish")


async def test_a_worker_registers_its_info_under_a_lease_that_ends_within_its_ttl_after_sigkill(
        store: Store, workers: Workers) -> None:
    worker = workers("w1", slots=3, tags="gpu, ssd", lease_ttl=1.0)
    info, lease = await _registered(store, "w1")
    assert lease != 0
    assert (info.id, info.host, info.slots, info.tags) == ("w1", socket.gethostname(), 3,
                                                            ("gpu", "ssd"))
    assert (info.running, info.free, info.version) == (0, 3, distcron.__version__)
    assert info.load >= 0
    assert datetime.fromisoformat(info.started_at).tzinfo is not None

    worker.signal(signal.SIGKILL)
    killed = time.monotonic()
    await _unregistered(store, "w1", within=5)
    # The last renewal was sent before the kill, so its TTL ran out by then.
    assert time.monotonic() - killed < 1.0 + 0.5


async def test_a_worker_stopped_by_sigterm_unregisters_at_once_and_exits_cleanly(
        store: Store, workers: Workers) -> None:
    worker = workers("w1", lease_ttl=30.0)
    await _registered(store, "w1")
    worker.signal(signal.SIGTERM)
    # Far sooner than the 30-second lease: it was revoked.
    await _unregistered(store, "w1", within=5)
    assert await worker.exited() == 0
    assert "event=unregistered worker=w1" in worker.log()


@pytest.mark.parametrize("loss", ["registration deleted", "lease revoked"])
async def test_a_worker_whose_registration_is_gone_claims_nothing_until_it_registers_again(
        store: Store, workers: Workers, tmp_path: Path, loss: str) -> None:
    # Renewals every 10 s: within this test only the claim guard can notice.
    worker = workers("w1", lease_ttl=30.0)
    _, lease = await _registered(store, "w1")
    if loss == "registration deleted":
        await store.delete(worker_key("w1"))
    else:
        await store.lease_revoke(lease)

    launch = request("backup@2026-11-24T06:00:00Z", ledger_command(tmp_path / "ledger"))
    await assign(store, "w1", launch)
    assert (await final_report(store, launch.launch_id)).worker == "w1"

    assignment = await store.get(f"assign/w1/{launch.launch_id}")
    registered = await store.get(worker_key("w1"))
    claimed = await store.get(claim_key(launch.launch_id))
    assert assignment is not None and registered is not None and claimed is not None
    assert registered.lease not in (0, lease)
    # Claimed only after it had registered again, under its new lease.
    assert assignment.create_revision < registered.create_revision < claimed.create_revision
    assert "event=lease_lost worker=w1" in worker.log()
    assert ledger(tmp_path / "ledger") == [f"start {launch.launch_id}",
                                           f"end {launch.launch_id}"]


async def test_a_second_worker_with_the_same_id_waits_until_the_first_is_gone(
        store: Store, workers: Workers) -> None:
    first = workers("w1", lease_ttl=30.0)
    _, first_lease = await _registered(store, "w1")
    second = workers("w1", name="w1-twin", lease_ttl=30.0)
    await second.logged("event=registration_waiting worker=w1")
    _, lease = await _registered(store, "w1")
    assert lease == first_lease

    first.signal(signal.SIGTERM)
    _, second_lease = await _registered(store, "w1", other_than=first_lease)
    await second.logged(f"event=registered worker=w1 lease={second_lease:#x}")


def test_a_worker_id_with_a_slash_is_refused_before_anything_starts(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "distcron", "worker", "--store",
         f"sqlite:///{tmp_path / 'state.db'}", "--id", "a/b"],
        cwd=tmp_path, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 2
    assert "worker id 'a/b'" in done.stderr
    assert not (tmp_path / "state.db").exists()
