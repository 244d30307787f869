"""What a worker knows of each launch assigned to it: one record, one state.

A launch's task (:mod:`distcron.worker.runner`) claims, runs and reports it;
the task tells its steps, and the record follows:

==========  ============================  ==========================================
state       goes to                       when
==========  ============================  ==========================================
assigned    claiming, or stopping         a task is started for it (stopping: the
                                          leader asked for it to stop already)
claiming    claimed                       the claim holds
claimed     running                       the run is live (started, or adopted;
                                          a staged launch: once a release mark
                                          named it, see distcron.worker.staged)
claimed     ended                         nothing was started (a stop came first,
                                          or the start failed), or the run was lost
running     ended                         the run ended
stopping    ended                         the run, if any, was stopped
ended       reported                      the final report is written: the task
                                          is done
any other   reported                      the task is done early: the assignment
with a                                    was gone, the launch claimed by another
task                                      worker, or its final report written
                                          before a restart
claiming,   assigned                      the registration was gone at the claim:
stopping                                  claimed again once registered
==========  ============================  ==========================================

A stop request (the leader rewrites the assignment, see
:mod:`distcron.worker.protocol`) turns claiming, claimed and running into
stopping; later, it changes nothing. A staged launch waits for its mark as
``claimed``, holding its slot (the leader counts it busy too).

Only the states from ``claiming`` to ``stopping`` hold one of the worker's
slots; a launch holds it from before its claim until its run is over (its
final report is written after). Which waiting launches get a task is decided by
:func:`to_dispatch`: launches this worker found claimed by itself (a restart:
their runs may be live) and launches the leader asked to stop (they start
nothing) go first and whatever the slots; the others, in the order they came,
while slots are free.

When the leader deletes the assignment of a launch whose task still runs, the
record stays, unassigned, until the task ends: the run keeps its slot, and its
reports are dropped (the runner guards them by the assignment).

Everything here is pure: transitions take the instant (``Clock.monotonic``)
and return a new record, or ``None`` when the worker forgets the launch; the
agent (:mod:`distcron.worker.agent`) applies them and runs the tasks. A
transition the agent should never ask for (a bug) raises ``ValueError``.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

from distcron.worker.protocol import stop_requested


class State(Enum):
    ASSIGNED = "assigned"  # known; waits for a task (a free slot, the registration)
    CLAIMING = "claiming"  # its task is claiming it
    CLAIMED = "claimed"  # claimed; its run is being started, adopted, or staged
    RUNNING = "running"  # its run is live
    STOPPING = "stopping"  # the leader asked for it to stop; its task ends it
    ENDED = "ended"  # its run is over; the final report is being written
    REPORTED = "reported"  # nothing left to do until the leader deletes it

    @property
    def has_task(self) -> bool:
        return self in _WITH_TASK

    @property
    def holds_slot(self) -> bool:
        return self in _HOLDING_SLOT


_HOLDING_SLOT = frozenset({State.CLAIMING, State.CLAIMED, State.RUNNING, State.STOPPING})
_WITH_TASK = _HOLDING_SLOT | {State.ENDED}
_STOPPABLE = frozenset({State.CLAIMING, State.CLAIMED, State.RUNNING})


class Step(Enum):
    """What a launch's task tells the agent as it goes."""

    CLAIMED = "claimed"  # the claim holds (made now, or found from before)
    RUNNING = "running"  # the run is live (started, or adopted)
    ENDED = "ended"  # no live run is left; the final report comes next


class Outcome(Enum):
    """How a launch's task ended."""

    DONE = "done"  # finished with the launch: reported, gone, or someone else's
    RETRY = "retry"  # not claimed because the registration is gone; try again later


class Waiting(Enum):
    """Why an assigned launch has no task yet."""

    SLOTS_FULL = "slots_full"
    NOT_REGISTERED = "not_registered"


_ON_STEP = {
    (State.CLAIMING, Step.CLAIMED): State.CLAIMED,
    (State.CLAIMED, Step.RUNNING): State.RUNNING,
    (State.CLAIMED, Step.ENDED): State.ENDED,  # never started, or failed to start
    (State.RUNNING, Step.ENDED): State.ENDED,
    (State.STOPPING, Step.CLAIMED): State.STOPPING,
    (State.STOPPING, Step.RUNNING): State.STOPPING,  # an adopted run, to be stopped
    (State.STOPPING, Step.ENDED): State.ENDED,
}


@dataclass(frozen=True)
class Launch:
    """One assigned launch. ``value``: its assignment's value as last seen;
    ``since``: when it entered its state; ``assigned``: its assignment still
    exists; ``ours``: found claimed by this worker before it had a task here
    (this worker restarted), so it is adopted first."""

    launch_id: str
    value: bytes
    state: State
    since: float
    assigned: bool = True
    ours: bool = False

    @functools.cached_property
    def stop(self) -> bool:
        """The leader asked for the launch to be stopped (kept: the agent asks
        for every waiting launch at every change)."""
        return stop_requested(self.value)

    @property
    def urgent(self) -> bool:
        """Waiting, and to get a task whatever the slots: adopting a run or
        honouring a stop starts nothing new."""
        return self.state is State.ASSIGNED and (self.ours or self.stop)

    def seen(self, value: bytes, now: float) -> Launch:
        """The assignment was read or written again. The only rewrite the leader
        makes is a stop request: a launch being claimed or run goes ``stopping``."""
        if value == self.value and self.assigned:
            return self
        launch = dataclasses.replace(self, value=value, assigned=True)
        if stop_requested(value) and self.state in _STOPPABLE:
            return launch._to(State.STOPPING, now)
        return launch

    def unassigned(self) -> Launch | None:
        """The leader deleted the assignment (after recording the outcome). A
        launch with a task is kept until the task ends; else it is forgotten."""
        if not self.state.has_task:
            return None
        return dataclasses.replace(self, assigned=False)

    def dispatched(self, now: float) -> Launch:
        """A task was started for it."""
        if self.state is not State.ASSIGNED:
            raise ValueError(f"launch {self.launch_id!r} is {self.state.value}: "
                             "only an assigned launch gets a task")
        return self._to(State.STOPPING if self.stop else State.CLAIMING, now)

    def progressed(self, step: Step, now: float) -> Launch:
        """Its task got one step further."""
        after = _ON_STEP.get((self.state, step))
        if after is None:
            raise ValueError(f"launch {self.launch_id!r} is {self.state.value}: "
                             f"its task cannot be at {step.value!r}")
        return self if after is self.state else self._to(after, now)

    def finished(self, outcome: Outcome, now: float) -> Launch | None:
        """Its task ended (``None``: forgotten, as its assignment is gone). A
        task that failed (a bug) counts as done: it is not retried in a loop."""
        if not self.state.has_task:
            raise ValueError(f"launch {self.launch_id!r} is {self.state.value}: "
                             "it has no task to finish")
        retry = outcome is Outcome.RETRY
        if retry and self.state not in (State.CLAIMING, State.STOPPING):
            raise ValueError(f"launch {self.launch_id!r} is {self.state.value}: "
                             "only a claim is retried")
        if not self.assigned:
            return None
        if retry:
            return self._to(State.ASSIGNED, now)
        return dataclasses.replace(self._to(State.REPORTED, now), ours=False)

    def _to(self, state: State, now: float) -> Launch:
        return dataclasses.replace(self, state=state, since=now)


def assigned(launch_id: str, value: bytes, now: float, *, ours: bool = False) -> Launch:
    """A launch seen assigned for the first time."""
    return Launch(launch_id, value, State.ASSIGNED, since=now, ours=ours)


def busy(launches: Iterable[Launch]) -> int:
    """How many slots the launches hold."""
    return sum(1 for launch in launches if launch.state.holds_slot)


def to_dispatch(launches: Iterable[Launch], slots: int) -> list[Launch]:
    """The waiting launches to give a task now, in the order given (the order
    the assignments came): every urgent one, then others while slots are free.
    An urgent launch takes a slot too, so new claims wait until the slots are
    free again."""
    launches = list(launches)
    waiting = [launch for launch in launches if launch.state is State.ASSIGNED]
    urgent = [launch for launch in waiting if launch.urgent]
    free = slots - busy(launches) - len(urgent)
    others = [launch for launch in waiting if not launch.urgent]
    return urgent + others[:max(0, free)]


def waiting_reason(launches: Iterable[Launch], slots: int) -> Waiting:
    """Why a launch left waiting by :func:`to_dispatch` has no task."""
    return Waiting.SLOTS_FULL if busy(launches) >= slots else Waiting.NOT_REGISTERED
