"""What an executor's final word on a run means for its launch record."""

from __future__ import annotations

from distcron.executors.base import RunState
from distcron.scheduler.records import LaunchState

OUTCOMES = {
    RunState.SUCCEEDED: LaunchState.SUCCEEDED,
    RunState.FAILED: LaunchState.FAILED,
    RunState.TIMED_OUT: LaunchState.TIMED_OUT,
    RunState.STOPPED: LaunchState.STOPPED,
    RunState.LOST: LaunchState.LOST,
}
