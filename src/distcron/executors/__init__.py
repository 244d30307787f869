"""Executors: how a launch is started, queried and stopped (see :mod:`.base`).

``local`` runs launches on this machine (:class:`LocalExecutor`).
"""

from distcron.executors.base import Executor, LaunchRequest, RunState, RunStatus
from distcron.executors.local import LocalExecutor

__all__ = ["Executor", "LaunchRequest", "LocalExecutor", "RunState", "RunStatus"]
