"""Executors: how a launch is started, queried and stopped (see :mod:`.base`).

``local`` runs launches on this machine (:class:`LocalExecutor`), ``http``
sends them to an outside system (:class:`HttpExecutor`).
"""

from distcron.executors.base import Executor, HttpCall, LaunchRequest, RunState, RunStatus
from distcron.executors.http import HttpExecutor
from distcron.executors.local import LocalExecutor

__all__ = ["Executor", "HttpCall", "HttpExecutor", "LaunchRequest", "LocalExecutor",
           "RunState", "RunStatus"]
