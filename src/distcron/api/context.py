"""What every request handler gets: the store, this replica, the token, the metrics
registry and the clock."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from prometheus_client import CollectorRegistry

from distcron.api.view import ReplicaView
from distcron.clock import Clock
from distcron.store import Store


@dataclass(frozen=True, slots=True)
class ApiContext:
    store: Store
    replica: ReplicaView
    token: str | None
    registry: CollectorRegistry
    clock: Clock


def _context(request: Request) -> ApiContext:
    context: ApiContext = request.app.state.distcron
    return context


Context = Annotated[ApiContext, Depends(_context)]
