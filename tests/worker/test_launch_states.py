"""The worker's record of one launch, and which waiting launches get a task.

Pure: no store, no tasks. Instants are plain monotonic seconds, as the agent
passes ``Clock.monotonic()``.
"""

from __future__ import annotations

import json

import pytest

from distcron.worker.launches import (
    Launch,
    Outcome,
    State,
    Step,
    Waiting,
    assigned,
    busy,
    to_dispatch,
    waiting_reason,
)
from distcron.worker.protocol import stop_value


def _value(launch_id: str) -> bytes:
    return json.dumps({"launch_id": launch_id, "command": "true"}).encode()


def _launch(name: str, state: State = State.ASSIGNED, *, since: float = 0.0,
            stop: bool = False, ours: bool = False) -> Launch:
    launch_id = f"{name}@2026-11-24T06:00:00Z"
    value = stop_value(launch_id) if stop else _value(launch_id)
    return Launch(launch_id, value, state, since=since, ours=ours)


def _ids(launches: list[Launch]) -> list[str]:
    return [launch.launch_id.partition("@")[0] for launch in launches]


def test_a_new_assignment_waits_for_a_task_holding_no_slot() -> None:
    launch = assigned("a@2026-11-24T06:00:00Z", _value("a@2026-11-24T06:00:00Z"), 5.0)
    assert (launch.state, launch.since, launch.assigned) == (State.ASSIGNED, 5.0, True)
    assert not launch.state.holds_slot and not launch.state.has_task
    assert not launch.urgent and not launch.stop


def test_a_launch_goes_from_assigned_through_claimed_and_running_to_reported() -> None:
    launch = _launch("a").dispatched(1.0)
    assert (launch.state, launch.since) == (State.CLAIMING, 1.0)
    launch = launch.progressed(Step.CLAIMED, 2.0)
    assert (launch.state, launch.since) == (State.CLAIMED, 2.0)
    launch = launch.progressed(Step.RUNNING, 3.0)
    assert (launch.state, launch.since) == (State.RUNNING, 3.0)
    assert launch.state.holds_slot
    launch = launch.progressed(Step.ENDED, 4.0)
    assert (launch.state, launch.since) == (State.ENDED, 4.0)
    assert launch.state.has_task and not launch.state.holds_slot
    done = launch.finished(Outcome.DONE, 5.0)
    assert done is not None and (done.state, done.since) == (State.REPORTED, 5.0)
    assert not done.state.has_task and not done.state.holds_slot


def test_a_claimed_launch_that_never_runs_ends_without_running() -> None:
    """Stopped before its start, failed to start, or found lost on adoption."""
    launch = _launch("a", State.CLAIMED).progressed(Step.ENDED, 1.0)
    assert launch.state is State.ENDED


@pytest.mark.parametrize("state", [State.CLAIMING, State.CLAIMED, State.RUNNING, State.ENDED])
def test_a_task_done_in_any_state_leaves_the_launch_reported(state: State) -> None:
    """Done while claiming: the assignment was gone, or another worker's claim
    was found; while claimed: its final report was written before a restart."""
    done = _launch("a", state).finished(Outcome.DONE, 9.0)
    assert done is not None and done.state is State.REPORTED


def test_a_stop_before_the_claim_gets_a_task_at_once_and_never_runs() -> None:
    waiting = _launch("a").seen(stop_value("a@2026-11-24T06:00:00Z"), 2.0)
    assert waiting.state is State.ASSIGNED and waiting.stop and waiting.urgent
    # Whatever the slots: it starts nothing.
    full = [_launch("b", State.RUNNING)]
    assert _ids(to_dispatch([*full, waiting], slots=1)) == ["a"]
    launch = waiting.dispatched(3.0)
    assert launch.state is State.STOPPING and launch.state.holds_slot
    launch = launch.progressed(Step.CLAIMED, 4.0)
    assert launch.state is State.STOPPING
    launch = launch.progressed(Step.ENDED, 5.0)
    assert launch.state is State.ENDED and not launch.state.holds_slot
    done = launch.finished(Outcome.DONE, 6.0)
    assert done is not None and done.state is State.REPORTED


@pytest.mark.parametrize("state", [State.CLAIMING, State.CLAIMED, State.RUNNING])
def test_a_stop_for_a_launch_with_a_task_makes_it_stopping(state: State) -> None:
    launch = _launch("a", state, since=1.0)
    stopping = launch.seen(stop_value(launch.launch_id), 7.0)
    assert (stopping.state, stopping.since, stopping.stop) == (State.STOPPING, 7.0, True)
    assert stopping.state.holds_slot


def test_a_stopping_launch_follows_its_task_to_its_end() -> None:
    """A stop while running: the run is stopped, then reported as any end."""
    launch = _launch("a", State.RUNNING).seen(stop_value("a@2026-11-24T06:00:00Z"), 1.0)
    # An adopted run is still to be stopped, once claimed and found live.
    assert launch.progressed(Step.CLAIMED, 2.0).state is State.STOPPING
    assert launch.progressed(Step.RUNNING, 2.0).state is State.STOPPING
    ended = launch.progressed(Step.ENDED, 3.0)
    assert (ended.state, ended.since) == (State.ENDED, 3.0)


@pytest.mark.parametrize("state", [State.STOPPING, State.ENDED, State.REPORTED])
def test_a_stop_that_comes_again_or_after_the_run_changes_no_state(state: State) -> None:
    launch = _launch("a", state, since=1.0, stop=state is State.STOPPING)
    later = launch.seen(stop_value(launch.launch_id), 5.0)
    assert (later.state, later.since, later.stop) == (state, 1.0, True)


def test_the_same_assignment_read_again_leaves_the_record_as_it_was() -> None:
    launch = _launch("a", State.RUNNING, since=1.0)
    assert launch.seen(launch.value, 5.0) is launch


def test_a_restart_finding_its_own_claim_adopts_it_first_whatever_the_slots() -> None:
    backlog = _launch("backlog")  # came first, but not claimed by this worker
    mine = _launch("mine", ours=True)
    assert mine.urgent and not backlog.urgent
    assert _ids(to_dispatch([backlog, mine], slots=1)) == ["mine"]
    assert _ids(to_dispatch([backlog, mine], slots=2)) == ["mine", "backlog"]
    # It takes a slot while adopted; done, it is no longer "ours" to adopt.
    adopting = mine.dispatched(1.0)
    assert adopting.state is State.CLAIMING and adopting.state.holds_slot
    assert to_dispatch([backlog, adopting], slots=1) == []
    done = adopting.progressed(Step.CLAIMED, 2.0).finished(Outcome.DONE, 3.0)
    assert done is not None and done.state is State.REPORTED and not done.ours


@pytest.mark.parametrize("state", [State.CLAIMING, State.STOPPING])
def test_a_launch_whose_claim_found_the_registration_gone_waits_again(state: State) -> None:
    launch = _launch("a", state, since=1.0, stop=state is State.STOPPING)
    again = launch.finished(Outcome.RETRY, 4.0)
    assert again is not None and (again.state, again.since) == (State.ASSIGNED, 4.0)
    assert not again.state.holds_slot
    # Registered again, it gets its task back, as a stop if it was one.
    assert again.dispatched(5.0).state is state


def test_a_waiting_launch_is_waiting_for_the_registration_while_slots_are_free() -> None:
    assert waiting_reason([_launch("a")], slots=1) is Waiting.NOT_REGISTERED


def test_with_its_slots_full_a_worker_gives_no_new_launch_a_task() -> None:
    running = [_launch("a", State.RUNNING), _launch("b", State.CLAIMED)]
    waiting = [_launch("c"), _launch("d")]
    assert to_dispatch([*running, *waiting], slots=2) == []
    assert waiting_reason([*running, *waiting], slots=2) is Waiting.SLOTS_FULL
    assert busy([*running, *waiting]) == 2
    # A run ends: its slot goes to the launch that came first.
    freed = [running[0].progressed(Step.ENDED, 1.0), running[1]]
    assert _ids(to_dispatch([*freed, *waiting], slots=2)) == ["c"]


def test_urgent_launches_take_slots_before_the_others_get_any() -> None:
    launches = [_launch("a"), _launch("b", stop=True), _launch("c"), _launch("d", ours=True)]
    assert _ids(to_dispatch(launches, slots=3)) == ["b", "d", "a"]
    assert _ids(to_dispatch(launches, slots=1)) == ["b", "d"]


def test_only_waiting_launches_are_given_a_task() -> None:
    launches = [_launch(state.value, state) for state in State]
    assert _ids(to_dispatch(launches, slots=10)) == ["assigned"]


def test_an_assignment_deleted_before_its_task_is_forgotten() -> None:
    assert _launch("a").unassigned() is None
    assert _launch("a", State.REPORTED).unassigned() is None


def test_an_assignment_deleted_under_a_live_run_keeps_its_slot_until_the_task_ends() -> None:
    launch = _launch("a", State.RUNNING).unassigned()
    assert launch is not None and not launch.assigned and launch.state.holds_slot
    ended = launch.progressed(Step.ENDED, 1.0)
    assert ended.finished(Outcome.DONE, 2.0) is None
    # Assigned again meanwhile: remembered, and reported when its task is done.
    again = ended.seen(ended.value, 3.0)
    assert again.assigned
    done = again.finished(Outcome.DONE, 4.0)
    assert done is not None and done.state is State.REPORTED


def test_a_claim_retried_after_its_assignment_was_deleted_is_forgotten() -> None:
    launch = _launch("a", State.CLAIMING).unassigned()
    assert launch is not None and launch.finished(Outcome.RETRY, 1.0) is None


@pytest.mark.parametrize("state", [s for s in State if s is not State.ASSIGNED])
def test_only_a_waiting_launch_can_be_given_a_task(state: State) -> None:
    with pytest.raises(ValueError, match=rf"launch 'a@2026-11-24T06:00:00Z' is {state.value}"):
        _launch("a", state).dispatched(1.0)


@pytest.mark.parametrize(("state", "step"), [
    (State.ASSIGNED, Step.CLAIMED), (State.CLAIMING, Step.RUNNING),
    (State.CLAIMING, Step.ENDED), (State.RUNNING, Step.CLAIMED),
    (State.ENDED, Step.RUNNING), (State.REPORTED, Step.ENDED)])
def test_a_step_out_of_order_is_refused_naming_the_launch(state: State, step: Step) -> None:
    with pytest.raises(ValueError, match=f"is {state.value}: its task cannot be at"):
        _launch("a", state).progressed(step, 1.0)


@pytest.mark.parametrize("state", [State.ASSIGNED, State.REPORTED])
def test_a_launch_without_a_task_cannot_finish_one(state: State) -> None:
    with pytest.raises(ValueError, match="it has no task to finish"):
        _launch("a", state).finished(Outcome.DONE, 1.0)


@pytest.mark.parametrize("state", [State.CLAIMED, State.RUNNING, State.ENDED])
def test_only_a_claim_is_retried(state: State) -> None:
    with pytest.raises(ValueError, match="only a claim is retried"):
        _launch("a", state).finished(Outcome.RETRY, 1.0)
