"""The HTTP API: jobs, runs and cluster state, served by every replica.

Any replica, leader or follower, answers: everything is read from and written
to the store, which is the one source of truth; the only thing a replica tells
the API about itself is its :class:`~distcron.api.view.ReplicaView`.
"""

from __future__ import annotations

from distcron.api.app import create_app
from distcron.api.view import ReplicaView

__all__ = ["ReplicaView", "create_app"]
