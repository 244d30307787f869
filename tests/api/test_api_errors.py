"""Every refusal has the shape the OpenAPI schema gives it: 422 lists problems
(job, field, line, msg), any other refusal says why in ``detail``; and the schema
documents them for every route."""

from __future__ import annotations

import httpx
import pytest

from distcron.api.models import Problems, Refusal
from tests.served_api import ServedApi


def test_the_schema_documents_each_refusal_with_its_body(client: httpx.Client) -> None:
    schema = client.get("/openapi.json").json()
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            answers = operation["responses"]
            for code in ("401", "404", "409", "422"):
                assert code in answers, f"{method.upper()} {path} does not document {code}"
            [body] = answers["422"]["content"].values()  # JSON, or a text route's own type
            assert body["schema"]["$ref"].endswith("/Problems"), (method, path, body)
            [refusal] = answers["404"]["content"].values()
            assert refusal["schema"]["$ref"].endswith("/Refusal"), (method, path, refusal)


@pytest.mark.parametrize(("method", "path", "body"), [
    ("PUT", "/jobs/bad", {"schedule": "0 25 * * *", "command": "true"}),  # our validation
    ("GET", "/runs?limit=0", None),  # FastAPI's own
    ("PUT", "/jobs/bad", {"schedule": "* * * * *", "command": "true", "retries": "many"}),
])
def test_every_422_lists_its_problems(client: httpx.Client, method: str, path: str,
                                      body: object) -> None:
    answer = client.request(method, path, json=body)
    assert answer.status_code == 422, answer.text
    problems = Problems.model_validate(answer.json())
    assert problems.detail and all(p.msg for p in problems.detail)


def test_a_backfill_over_a_future_range_is_a_422_naming_the_field(
        api: ServedApi, client: httpx.Client) -> None:
    client.put("/jobs/nightly", json={"schedule": "0 3 * * *", "command": "true"})
    answer = client.post("/jobs/nightly/backfill",
                         json={"from": "2020-01-01T00:00:00Z", "to": "2999-01-01T00:00:00Z"})
    assert answer.status_code == 422
    [problem] = Problems.model_validate(answer.json()).detail
    assert (problem.job, problem.field) == ("nightly", "to")


def test_other_refusals_say_why(api: ServedApi, client: httpx.Client) -> None:
    missing = client.get("/jobs/nothing-here")
    assert missing.status_code == 404 and Refusal.model_validate(missing.json()).detail
    refused = httpx.put(f"{api.url}/jobs/x", json={"schedule": "* * * * *",
                                                   "command": "true"}, timeout=10)
    assert refused.status_code == 401 and Refusal.model_validate(refused.json()).detail
