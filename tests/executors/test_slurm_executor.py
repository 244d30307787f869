"""The Slurm executor against a real one-node Slurm (tests/slurm_cluster.py).

What is checked is what Slurm holds: the number of its jobs of a launch's name,
their states and reasons, and the files the jobs wrote.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from distcron.executors.base import LaunchRequest, RunState, SlurmOptions
from distcron.executors.slurm import SlurmExecutor
from tests.slurm_cluster import SlurmCluster, running_slurm
from tests.waiting import eventually

pytestmark = pytest.mark.anyio

WITHIN = 30.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def slurm() -> Iterator[SlurmCluster]:
    with running_slurm() as cluster:
        yield cluster


@pytest.fixture
def output_dir(slurm: SlurmCluster) -> Path:
    return slurm.root / "runs"


def make_executor(slurm: SlurmCluster, output_dir: Path) -> SlurmExecutor:
    return SlurmExecutor(output_dir, cluster="test", env=slurm.env, poll_interval=0.2,
                         call_timeout=10)


@pytest.fixture
async def executor(slurm: SlurmCluster, output_dir: Path) -> AsyncIterator[SlurmExecutor]:
    ex = make_executor(slurm, output_dir)
    yield ex
    await ex.close()


def request(launch_id: str, command: str | None = None, *, argv: tuple[str, ...] | None = None,
            slot: datetime | None = None, **options: object) -> LaunchRequest:
    return LaunchRequest(launch_id=launch_id, job=launch_id.partition("@")[0], slot=slot,
                         fence=7, command=command, argv=argv, env={"GREETING": "it's me"},
                         slurm=SlurmOptions(**options) if options else None)  # type: ignore[arg-type]


async def test_exit_codes_output_and_environment(
        slurm: SlurmCluster, output_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The replica's own environment stays out of the job.
    monkeypatch.setenv("DISTCRON_TOKEN", "secret")
    executor = make_executor(slurm, output_dir)
    try:
        await _exit_codes_output_and_environment(executor, slurm)
    finally:
        await executor.close()


async def _exit_codes_output_and_environment(executor: SlurmExecutor,
                                             slurm: SlurmCluster) -> None:
    ok = await executor.start(request(
        "ok@2026-12-02T18:00:00Z",
        'echo "$GREETING $DISTCRON_LAUNCH_ID $DISTCRON_FENCE ${DISTCRON_TOKEN-none}"'))
    assert ok.state in (RunState.PENDING, RunState.RUNNING)
    bad = await executor.start(request("bad@2026-12-02T18:00:00Z", "echo oops >&2; exit 3"))
    direct = await executor.start(request("argv@x", argv=("sh", "-c", "exit 0")))
    ended = await asyncio.wait_for(asyncio.gather(
        executor.wait(ok.launch_id), executor.wait(bad.launch_id),
        executor.wait(direct.launch_id)), WITHIN)
    assert [(s.state, s.exit_code) for s in ended] == [
        (RunState.SUCCEEDED, 0), (RunState.FAILED, 3), (RunState.SUCCEEDED, 0)]
    assert ended[1].reason.endswith("exit code 3")
    assert await executor.output(ok.launch_id) == b"it's me ok@2026-12-02T18:00:00Z 7 none\n"
    assert await executor.output(bad.launch_id) == b"oops\n"
    assert ended[0].started_at is not None and ended[0].ended_at is not None
    assert slurm.jobs_named(ok.launch_id) != []


async def test_the_same_launch_started_twice_is_one_slurm_job(
        executor: SlurmExecutor, slurm: SlurmCluster, output_dir: Path) -> None:
    launch = request("twice@2026-12-02T18:00:00Z", "echo once")
    first, second = await asyncio.gather(executor.start(launch), executor.start(launch))
    assert first == second
    again = await executor.start(launch)
    assert again.launch_id == launch.launch_id
    # Another executor (a new leader) finds it by name and adopts it.
    other = make_executor(slurm, output_dir)
    try:
        adopted = await other.start(launch)
        assert adopted.state is not RunState.NOT_FOUND
        assert (await asyncio.wait_for(other.wait(launch.launch_id), WITHIN)).exit_code == 0
    finally:
        await other.close()
    assert len(slurm.jobs_named(launch.launch_id)) == 1
    assert await executor.output(launch.launch_id) == b"once\n"


async def test_a_job_larger_than_the_node_pends_with_slurms_reason(
        executor: SlurmExecutor, slurm: SlurmCluster) -> None:
    launch = request("huge@x", "echo never", cpus=slurm.cpus + 8)
    status = await executor.start(launch)
    assert status.state is RunState.PENDING
    slurm_reason = await eventually(
        lambda: slurm.run("squeue", "--noheader", f"--name={launch.launch_id}",
                          "--format=%r").strip(), WITHIN, "Slurm to give a reason")
    status = await eventually(
        lambda: _reason_shown(executor, launch.launch_id, slurm_reason), WITHIN,
        "the executor to report Slurm's reason")
    assert status.reason == f"pending in Slurm: {slurm_reason}"
    assert not status.state.final
    stopped = await asyncio.wait_for(executor.stop(launch.launch_id), WITHIN)
    assert stopped.state is RunState.STOPPED
    assert not (executor.output_dir / launch.launch_id / "started").exists()


async def _reason_shown(executor: SlurmExecutor, launch_id: str, reason: str) -> object:
    status = await executor.query(launch_id)
    return status if status.reason.endswith(reason) else None


async def test_a_launch_still_pending_at_its_starting_deadline_is_missed(
        executor: SlurmExecutor, slurm: SlurmCluster) -> None:
    now = datetime.now(UTC)
    launch = request("late@x", "echo never", slot=now, cpus=slurm.cpus + 8,
                     starting_deadline=2.0, time_limit=60.0)
    await executor.start(launch)
    ended = await asyncio.wait_for(executor.wait(launch.launch_id), WITHIN)
    assert ended.state is RunState.MISSED, ended
    assert "starting deadline" in ended.reason


async def test_stop_cancels_a_running_job(executor: SlurmExecutor, slurm: SlurmCluster,
                                          output_dir: Path) -> None:
    launch = request("long@x", "sleep 600")
    await executor.start(launch)
    await eventually((output_dir / launch.launch_id / "started").exists, WITHIN,
                     "the job to start on the node")
    running = await eventually(lambda: _in_state(executor, launch.launch_id, RunState.RUNNING),
                               WITHIN, "the run to read running")
    assert running.started_at is not None
    stopped = await asyncio.wait_for(executor.stop(launch.launch_id), WITHIN)
    assert stopped.state is RunState.STOPPED
    assert (await executor.stop(launch.launch_id)).state is RunState.STOPPED


async def _in_state(executor: SlurmExecutor, launch_id: str, state: RunState) -> object:
    status = await executor.query(launch_id)
    return status if status.state is state else None


async def test_unknown_to_slurm_is_not_found_unless_its_directory_says_otherwise(
        executor: SlurmExecutor, output_dir: Path) -> None:
    assert (await executor.query("never@x")).state is RunState.NOT_FOUND
    assert (await executor.wait("never@x")).state is RunState.NOT_FOUND
    assert await executor.output("never@x") == b""
    # Slurm forgot these (MinJobAge passed); their wrappers left what they knew.
    (output_dir / "ended@x").mkdir(parents=True)
    (output_dir / "ended@x" / "exit").write_text("4\n")
    (output_dir / "vanished@x").mkdir()
    (output_dir / "vanished@x" / "started").write_text("")
    ended = await executor.query("ended@x")
    assert (ended.state, ended.exit_code) == (RunState.FAILED, 4)
    assert (await executor.query("vanished@x")).state is RunState.LOST
    # And a start of such a launch adopts what is known: nothing is submitted.
    assert (await executor.start(request("ended@x", "echo again"))).state is RunState.FAILED


async def test_a_rejected_submission_fails_with_slurms_message(
        executor: SlurmExecutor, slurm: SlurmCluster) -> None:
    status = await executor.start(request("nowhere@x", "true", partition="no-such-partition"))
    assert status.state is RunState.FAILED
    assert "invalid partition" in status.reason.lower()


async def test_launches_wait_while_the_controller_is_down_and_none_is_doubled(
        executor: SlurmExecutor, slurm: SlurmCluster) -> None:
    slurm.stop_controller()
    launches = [request(f"outage{i}@x", f"exit {i}") for i in range(5)]
    starts = [asyncio.create_task(executor.start(launch)) for launch in launches]
    # What must not happen (a start returning) cannot be waited for: watch for it.
    done, _ = await asyncio.wait(starts, timeout=3)
    assert not done, "a start returned while the controller was down"
    slurm.start_controller()
    # Retries back off to RETRY_MAX (10 s) while the controller is down.
    statuses = await asyncio.wait_for(asyncio.gather(*starts), WITHIN * 2)
    assert all(s.state in (RunState.PENDING, RunState.RUNNING, RunState.FAILED)
               for s in statuses)
    ended = await asyncio.wait_for(
        asyncio.gather(*(executor.wait(launch.launch_id) for launch in launches)), WITHIN * 2)
    assert [s.exit_code for s in ended] == [0, 1, 2, 3, 4]
    for launch in launches:
        assert len(slurm.jobs_named(launch.launch_id)) == 1
