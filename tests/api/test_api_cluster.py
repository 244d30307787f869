"""Health, cluster status and metrics over HTTP."""

from __future__ import annotations

import json

import httpx
from prometheus_client.parser import text_string_to_metric_families

from distcron.api.testing import ServedApi
from distcron.store import Compare, Put
from distcron.store.layout import LEADER, replica_key


def _register(api: ServedApi, replica_id: str, listen: str) -> None:
    body = {"id": replica_id, "listen": listen, "started_at": "2026-11-24T05:00:00Z",
            "version": "0.1.0"}
    api.call(api.store.put(replica_key(replica_id), json.dumps(body).encode()))


def test_healthz_answers_without_a_token(api: ServedApi) -> None:
    answer = httpx.get(f"{api.url}/healthz")
    assert answer.json() == {"ok": True, "replica": "r1", "leader": True}


def test_status_names_the_leader_its_fence_and_every_replica(api: ServedApi) -> None:
    _register(api, "r1", "10.0.0.1:8500")
    _register(api, "r2", "10.0.0.2:8500")
    leader_body = json.dumps({"id": "r2", "listen": "10.0.0.2:8500"}).encode()
    taken = api.call(api.store.txn([Compare.missing(LEADER)], [Put(LEADER, leader_body)]))
    status = httpx.get(f"{api.url}/status").json()
    assert status["replica"] == "r1"
    assert status["leader"] == "r2"
    assert status["fence"] == taken.revision
    assert status["revision"] == taken.revision
    assert status["leader_changes"] == 3
    assert status["workers"] == []
    assert status["replicas"] == [
        {"id": "r1", "listen": "10.0.0.1:8500", "is_leader": False, "healthy": True,
         "started_at": "2026-11-24T05:00:00Z", "version": "0.1.0"},
        {"id": "r2", "listen": "10.0.0.2:8500", "is_leader": True, "healthy": True,
         "started_at": "2026-11-24T05:00:00Z", "version": "0.1.0"},
    ]


def test_status_without_a_leader_says_null(api: ServedApi) -> None:
    status = httpx.get(f"{api.url}/status").json()
    assert (status["leader"], status["fence"], status["replicas"]) == (None, None, [])


def test_metrics_are_prometheus_text_with_every_distcron_metric(api: ServedApi) -> None:
    answer = httpx.get(f"{api.url}/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(answer.text)}
    assert {"distcron_is_leader", "distcron_store_revision", "distcron_jobs_loaded",
            "distcron_workers", "distcron_launch_lag_seconds",
            "distcron_guarded_write_seconds", "distcron_leader_changes"} <= set(families)
    [info] = families["distcron_replica_info"].samples
    assert info.labels == {"replica": "r1", "version": "0.1.0"}


def test_the_openapi_document_is_served(api: ServedApi) -> None:
    paths = httpx.get(f"{api.url}/openapi.json").json()["paths"]
    assert {"/jobs", "/jobs/{name}", "/jobs/apply", "/runs", "/runs/{launch_id}",
            "/status", "/healthz", "/metrics"} <= set(paths)
