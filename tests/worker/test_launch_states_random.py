"""The launch records driven the way the agent drives them, by random sequences
of assignments, stops, deletions, registration losses and task steps. Each
task moves as a real one can (see distcron.worker.runner.LaunchRunner.handle),
so no transition may be refused, and the worker's promises hold throughout.
"""

from __future__ import annotations

import json
from enum import Enum

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from distcron.worker.launches import Launch, Outcome, State, Step, assigned, busy, to_dispatch
from distcron.worker.protocol import stop_value

SLOTS = 2


class Task(Enum):
    """Where a launch's task is, as the runner sees it."""

    CLAIMING = "claiming"
    CLAIMED = "claimed"
    RUNNING = "running"
    ENDED = "ended"


class Worker(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.records: dict[str, Launch] = {}
        self.tasks: dict[str, Task] = {}
        self.registered = True
        self.reported: set[str] = set()  # launches whose task has been done
        self.next_id = 0

    # What the store says.

    @rule()
    def assign(self) -> None:
        launch_id = f"job{self.next_id}@2026-11-24T06:00:00Z"
        self.next_id += 1
        value = json.dumps({"launch_id": launch_id}).encode()
        self.records[launch_id] = assigned(launch_id, value, self.now)
        self.dispatch()

    @precondition(lambda self: any(r.assigned for r in self.records.values()))
    @rule(data=st.data())
    def stop(self, data: st.DataObject) -> None:
        launch_id = data.draw(st.sampled_from(self.assigned_ids()))
        self.records[launch_id] = self.records[launch_id].seen(stop_value(launch_id), self.now)
        self.dispatch()

    @precondition(lambda self: any(r.assigned for r in self.records.values()))
    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        launch_id = data.draw(st.sampled_from(self.assigned_ids()))
        self.update(launch_id, self.records[launch_id].unassigned())

    @rule()
    def registration_changes(self) -> None:
        self.registered = not self.registered
        self.dispatch()

    # What the tasks tell.

    @precondition(lambda self: bool(self.tasks))
    @rule(data=st.data(), outcome=st.sampled_from(["step", "done"]))
    def task_moves(self, data: st.DataObject, outcome: str) -> None:
        launch_id = data.draw(st.sampled_from(sorted(self.tasks)))
        where = self.tasks[launch_id]
        if outcome == "done" and where in (Task.CLAIMING, Task.CLAIMED, Task.ENDED):
            # Claiming: gone or someone else's (or, unregistered: retried);
            # claimed: its final report was there already.
            retry = where is Task.CLAIMING and not self.registered
            self.finish(launch_id, Outcome.RETRY if retry else Outcome.DONE)
            return
        if where is Task.CLAIMING:
            after, step = Task.CLAIMED, Step.CLAIMED
        elif where is Task.CLAIMED:  # started or adopted live, or nothing to run
            after = data.draw(st.sampled_from([Task.RUNNING, Task.ENDED]))
            step = Step.RUNNING if after is Task.RUNNING else Step.ENDED
        elif where is Task.RUNNING:
            after, step = Task.ENDED, Step.ENDED
        else:
            return  # ended: only its final report is left
        self.tasks[launch_id] = after
        self.update(launch_id, self.records[launch_id].progressed(step, self.now))
        if step is Step.ENDED:
            self.dispatch()

    @rule(seconds=st.floats(0.0, 5.0))
    def time_passes(self, seconds: float) -> None:
        self.now += seconds

    # The agent's part.

    def dispatch(self) -> None:
        if not self.registered:
            return
        for launch in to_dispatch(self.records.values(), SLOTS):
            holding = busy(self.records.values())
            assert launch.urgent or holding < SLOTS, "a new claim beyond the slots"
            assert launch.launch_id not in self.tasks and launch.launch_id not in self.reported
            self.records[launch.launch_id] = launch.dispatched(self.now)
            self.tasks[launch.launch_id] = Task.CLAIMING

    def finish(self, launch_id: str, outcome: Outcome) -> None:
        del self.tasks[launch_id]
        if outcome is Outcome.DONE:
            self.reported.add(launch_id)
        self.update(launch_id, self.records[launch_id].finished(outcome, self.now))
        self.dispatch()

    def update(self, launch_id: str, after: Launch | None) -> None:
        if after is None:
            del self.records[launch_id]
        else:
            self.records[launch_id] = after

    def assigned_ids(self) -> list[str]:
        return sorted(i for i, r in self.records.items() if r.assigned)

    @invariant()
    def a_record_has_a_task_exactly_while_its_task_runs(self) -> None:
        for launch_id, launch in self.records.items():
            assert launch.state.has_task == (launch_id in self.tasks), launch
        assert set(self.tasks) <= set(self.records)

    @invariant()
    def a_launch_asked_to_stop_never_holds_a_slot_as_if_it_would_run_on(self) -> None:
        for launch in self.records.values():
            if launch.stop and launch.state.holds_slot:
                assert launch.state is State.STOPPING, launch

    @invariant()
    def only_launches_with_a_task_outlive_their_assignment(self) -> None:
        for launch in self.records.values():
            assert launch.assigned or launch.state.has_task, launch

    @invariant()
    def a_launch_done_is_never_waiting_again(self) -> None:
        for launch_id in self.reported & set(self.records):
            assert self.records[launch_id].state is State.REPORTED


Worker.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
test_launch_records_keep_the_workers_promises_under_random_events = Worker.TestCase
