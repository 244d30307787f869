"""Every call that changes something, or reads output, needs the token."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx
import pytest

from tests.served_api import ServedApi

READ_ONLY = {"get", "head", "options"}


def _mutating_routes(api: ServedApi) -> list[tuple[str, str]]:
    """Every (method, path) in the OpenAPI document that is not a read, path params filled in."""
    paths = httpx.get(f"{api.url}/openapi.json").json()["paths"]
    return [(method.upper(), re.sub(r"\{[^}]+\}", "backup", path))
            for path, operations in paths.items() for method in operations
            if method not in READ_ONLY]


def test_the_api_has_the_mutating_routes_this_test_expects_to_find(api: ServedApi) -> None:
    assert set(_mutating_routes(api)) >= {
        ("PUT", "/jobs/backup"), ("DELETE", "/jobs/backup"), ("POST", "/jobs/apply"),
        ("POST", "/jobs/backup/pause"), ("POST", "/jobs/backup/resume"),
        ("POST", "/jobs/backup/trigger"),
    }


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"},
                                     {"Authorization": "Basic dXNlcjpwYXNz"}],
                         ids=["no token", "wrong token", "not bearer"])
def test_every_mutating_route_refuses_a_missing_or_wrong_token_with_401(
    api: ServedApi, headers: dict[str, str]
) -> None:
    with httpx.Client(base_url=api.url, headers=headers) as client:
        for method, path in _mutating_routes(api):
            answer = client.request(method, path, json={})
            assert answer.status_code == 401, (method, path, answer.text)
            assert answer.headers["www-authenticate"] == "Bearer"


def test_every_mutating_route_declares_bearer_auth_in_openapi(api: ServedApi) -> None:
    document = httpx.get(f"{api.url}/openapi.json").json()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if method not in READ_ONLY:
                assert operation.get("security"), (method, path)


def test_a_server_without_a_token_refuses_changes_saying_how_to_set_one(
    make_api: Callable[..., ServedApi]
) -> None:
    api = make_api(token=None)
    with httpx.Client(base_url=api.url, headers={"Authorization": "Bearer anything"}) as client:
        for method, path in _mutating_routes(api):
            answer = client.request(method, path, json={})
            assert answer.status_code == 403, (method, path)
            assert "DISTCRON_TOKEN" in answer.json()["detail"]
        assert client.get("/runs/backup@2026-11-24T06:00:00Z",
                          params={"output": "true"}).status_code == 403
        assert client.get("/jobs").status_code == 200


def test_reads_need_no_token(api: ServedApi) -> None:
    with httpx.Client(base_url=api.url) as client:
        for path in ("/jobs", "/runs", "/status", "/healthz", "/metrics"):
            assert client.get(path).status_code == 200, path


def test_job_env_values_and_headers_are_hidden_from_readers_without_the_token(
        api: ServedApi, client: httpx.Client) -> None:
    hook = {"name": "hook", "schedule": "* * * * *", "executor": "http",
            "url": "https://example.test/run", "headers": {"Authorization": "Bearer s3cr3t"}}
    env_job = {"name": "env", "schedule": "* * * * *", "command": "true",
               "env": {"DB_PASSWORD": "hunter2"}}
    for body in (hook, env_job):
        assert client.put(f"/jobs/{body['name']}", json=body).status_code == 201
    anonymous = httpx.get(f"{api.url}/jobs").text
    assert "s3cr3t" not in anonymous and "hunter2" not in anonymous
    assert "DB_PASSWORD" in anonymous
    assert client.get("/jobs/env").json()["env"] == {"DB_PASSWORD": "hunter2"}


def test_an_http_job_s_url_user_info_query_and_body_are_hidden_from_readers_without_the_token(
        api: ServedApi, client: httpx.Client) -> None:
    url = "https://deploy:pa55word@example.test:8443/hooks/run?token=t0k3n&x=1#frag"
    hook = {"schedule": "* * * * *", "executor": "http", "url": url,
            "body": '{"secret": "b0dy"}'}
    assert client.put("/jobs/hook", json=hook).status_code == 201
    for anonymous in (httpx.get(f"{api.url}/jobs").json()[0],
                      httpx.get(f"{api.url}/jobs/hook").json()):
        shown = str(anonymous)
        for secret in ("deploy", "pa55word", "t0k3n", "b0dy", "frag"):
            assert secret not in shown, secret
        # Where it goes stays visible.
        assert anonymous["url"].startswith("https://***@example.test:8443/hooks/run?")
        assert anonymous["body"].startswith("<redacted")
    shown = client.get("/jobs/hook").json()
    assert (shown["url"], shown["body"]) == (url, '{"secret": "b0dy"}')
