"""``/healthz``, ``/status`` and ``/metrics``: this replica and the cluster it is part of.

``/status`` asks every other registered replica's ``/healthz`` (at the address
it registered) how far its state has caught up, so that one call shows each
replica's health and lag. A replica that does not answer within
:data:`PROBE_TIMEOUT` is shown unhealthy with no lag: registered (its lease is
alive) but its API unreachable from here.

The leader is the replica holding the leader key, unless that replica says
(in its ``/healthz``) that it does not lead at that key's fence: its lease is
ending, or its resignation is on the way. Then ``/status`` names no leader
and says why, so that it never contradicts the replica's own ``/healthz``.
"""

from __future__ import annotations

import asyncio

import httpx
from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from distcron.api.context import Context
from distcron.api.models import (
    ERRORS,
    ClusterStatus,
    Health,
    ReplicaRegistration,
    ReplicaStatus,
    WorkerStatus,
)
from distcron.store import Get, KeyValue
from distcron.store.layout import LEADER, REPLICAS, WORKERS, leader_id_of
from distcron.worker.protocol import WorkerInfo

router = APIRouter(tags=["cluster"], responses=ERRORS)

PROBE_TIMEOUT = 1.0
_UNSPECIFIED_HOSTS = {"", "0.0.0.0", "::", "[::]"}


@router.get("/healthz", response_model=Health)
async def healthz(context: Context) -> Health:
    """Liveness of this replica; does not touch the store, so it answers while the store is down."""
    replica = context.replica
    return Health(ok=replica.store_problem is None, replica=replica.replica_id,
                  leader=replica.is_leader, fence=replica.fence,
                  revision=replica.applied_revision, clock_skew=replica.clock_skew,
                  clock_problem=replica.clock_problem, store_problem=replica.store_problem)


@router.get("/metrics", response_class=Response)
async def metrics(context: Context) -> Response:
    """This replica's metrics in Prometheus' text format."""
    return Response(generate_latest(context.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/status", response_model=ClusterStatus)
async def cluster_status(context: Context) -> ClusterStatus:
    """The leader, its fence and every registered replica, read in one snapshot."""
    result = await context.store.txn(
        (), (Get(LEADER), Get(REPLICAS, prefix=True), Get(WORKERS, prefix=True)))
    leader_kvs, replica_kvs, worker_kvs = result.results
    assert isinstance(leader_kvs, tuple) and isinstance(replica_kvs, tuple)
    assert isinstance(worker_kvs, tuple)
    leader = leader_kvs[0] if leader_kvs else None
    holder = leader_id_of(leader.value) if leader is not None else None
    registrations = [ReplicaRegistration.model_validate_json(kv.value) for kv in replica_kvs]
    others = [r for r in registrations if r.id != context.replica.replica_id]
    async with httpx.AsyncClient(timeout=PROBE_TIMEOUT) as http:
        answers = await asyncio.gather(*(_probe(http, r) for r in others))
    health = {r.id: answer for r, answer in zip(others, answers, strict=True)}
    health[context.replica.replica_id] = await healthz(context)
    leader_id, note = holder, None
    if leader is not None and holder is not None and _denies(health.get(holder), leader):
        leader_id = None
        note = (f"replica {holder} holds the leader key (fence {leader.create_revision}) "
                "but says it does not lead: its lease is ending or it is resigning")
    return ClusterStatus(
        replica=context.replica.replica_id,
        leader=leader_id,
        fence=leader.create_revision if leader is not None and leader_id else None,
        leader_note=note,
        revision=result.revision,
        leader_changes=context.replica.leader_changes,
        replicas=[_replica_status(r, leader_id, health.get(r.id), result.revision)
                  for r in registrations],
        workers=[_worker_status(kv) for kv in worker_kvs],
    )


def _denies(health: Health | None, leader: KeyValue) -> bool:
    """The key holder answered, and not as the leader at the key's fence."""
    if health is None:
        return False  # not known from here: the key is what there is
    return not health.leader or health.fence not in (None, leader.create_revision)


def _worker_status(kv: KeyValue) -> WorkerStatus:
    info = WorkerInfo.from_json(kv.value)
    return WorkerStatus(id=info.id, slots=info.slots, running=info.running, load=info.load,
                        host=info.host, tags=info.tags)


async def _probe(http: httpx.AsyncClient, registration: ReplicaRegistration) -> Health | None:
    """Another replica's own ``/healthz``; None if it did not answer (as itself)."""
    host, _, port = registration.listen.rpartition(":")
    if host in _UNSPECIFIED_HOSTS:
        host = registration.host or "127.0.0.1"
    try:
        response = await http.get(f"http://{host}:{port}/healthz")
        health = Health.model_validate_json(response.content)
    except (httpx.HTTPError, ValueError):
        return None
    return health if health.replica == registration.id else None


def _replica_status(registration: ReplicaRegistration, leader_id: str | None,
                    health: Health | None, revision: int) -> ReplicaStatus:
    applied = None if health is None else health.revision
    return ReplicaStatus(
        **registration.model_dump(),
        is_leader=registration.id == leader_id,
        # Registrations are leased (a replica that stopped renewing is gone); one
        # still registered must also answer.
        healthy=applied is not None,
        revision=applied,
        lag=None if applied is None else max(0, revision - applied),
        clock_skew=None if health is None else health.clock_skew,
        clock_problem=None if health is None else health.clock_problem,
    )
