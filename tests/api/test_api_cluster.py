"""Health, cluster status and metrics over HTTP."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from distcron.store import Compare, Put, open_store
from distcron.store.layout import LEADER, replica_key
from tests.served_api import ServedApi, StaticReplica


def _register(api: ServedApi, replica_id: str, listen: str) -> None:
    body = {"id": replica_id, "listen": listen, "started_at": "2026-11-24T05:00:00Z",
            "version": "0.1.0"}
    api.call(api.store.put(replica_key(replica_id), json.dumps(body).encode()))


def test_healthz_answers_without_a_token(api: ServedApi) -> None:
    answer = httpx.get(f"{api.url}/healthz")
    assert answer.json() == {"ok": True, "replica": "r1", "leader": True, "fence": None,
                             "revision": 0, "clock_skew": None, "clock_problem": None,
                             "store_problem": None}


def test_healthz_says_why_a_replica_stopped_using_its_store(api: ServedApi) -> None:
    assert isinstance(api.replica, StaticReplica)
    api.replica.store_problem = "the file was removed while this process had it open"
    answer = httpx.get(f"{api.url}/healthz").json()
    assert answer["ok"] is False and "removed" in answer["store_problem"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_status_asks_every_replica_for_its_health_and_lag(api: ServedApi,
                                                          tmp_path: Path) -> None:
    """r1 answers; r2 is a real server on loopback, 4 revisions behind; r3 is
    registered but nothing listens at its address."""
    _register(api, "r1", api.url.removeprefix("http://"))
    _register(api, "r3", f"127.0.0.1:{_free_port()}")
    leader_body = json.dumps({"id": "r2", "listen": "r2"}).encode()
    taken = api.call(api.store.txn([Compare.missing(LEADER)], [Put(LEADER, leader_body)]))
    assert isinstance(api.replica, StaticReplica)
    api.replica.is_leader = False
    api.replica.applied_revision = taken.revision + 1
    r2 = ServedApi(lambda: open_store(f"sqlite:///{tmp_path / 'state.db'}"),
                   StaticReplica("r2", is_leader=True, applied_revision=taken.revision - 3),
                   token=None)
    r2.start()
    try:
        _register(api, "r2", r2.url.removeprefix("http://"))
        status = httpx.get(f"{api.url}/status").json()
    finally:
        r2.stop()
    assert status["replica"] == "r1"
    assert status["leader"] == "r2"
    assert status["fence"] == taken.revision
    assert status["revision"] == taken.revision + 1  # r2's registration came last
    assert status["leader_changes"] == 3
    assert status["workers"] == []
    common = {"started_at": "2026-11-24T05:00:00Z", "version": "0.1.0", "host": None,
              "clock_skew": None, "clock_problem": None}
    assert status["replicas"] == [
        {"id": "r1", "listen": api.url.removeprefix("http://"), "is_leader": False,
         "healthy": True, "revision": taken.revision + 1, "lag": 0, **common},
        {"id": "r2", "listen": r2.url.removeprefix("http://"), "is_leader": True,
         "healthy": True, "revision": taken.revision - 3, "lag": 4, **common},
        {"id": "r3", "listen": status["replicas"][2]["listen"], "is_leader": False,
         "healthy": False, "revision": None, "lag": None, **common},
    ]


def test_status_names_no_leader_when_the_key_holder_says_it_does_not_lead(
        api: ServedApi) -> None:
    """r1 holds the leader key (its lease lives on) but its term has ended:
    /status must not name a leader that its own /healthz denies."""
    body = json.dumps({"id": "r1", "listen": "r1"}).encode()
    taken = api.call(api.store.txn([Compare.missing(LEADER)], [Put(LEADER, body)]))
    _register(api, "r1", api.url.removeprefix("http://"))
    assert isinstance(api.replica, StaticReplica)
    api.replica.is_leader, api.replica.fence = True, taken.revision
    status = httpx.get(f"{api.url}/status").json()
    assert (status["leader"], status["fence"], status["leader_note"]) == (
        "r1", taken.revision, None)
    api.replica.is_leader, api.replica.fence = False, None
    status = httpx.get(f"{api.url}/status").json()
    assert (status["leader"], status["fence"]) == (None, None)
    assert "r1 holds the leader key" in status["leader_note"]
    assert [r["is_leader"] for r in status["replicas"]] == [False]
    assert httpx.get(f"{api.url}/healthz").json()["leader"] is False


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
