"""Lost races answer 409 and change nothing; a store that is down answers 503."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import httpx

from distcron.errors import StoreUnavailable
from distcron.store import Compare, KeyValue, Op, Store, TxnResult
from distcron.store.layout import job_key
from tests.interposing_store import InterposingStore
from tests.served_api import ServedApi

BACKUP = {"schedule": "0 6 * * *", "command": "backup.sh"}
OTHER = b'{"name":"backup","schedule":"0 1 * * *","command":"theirs.sh"}'


class DownStore(InterposingStore):
    """Every read and write fails as an unreachable store's would."""

    async def get(self, key: str) -> KeyValue | None:
        raise StoreUnavailable("connection refused")

    async def range(self, prefix: str) -> tuple[list[KeyValue], int]:
        raise StoreUnavailable("connection refused")

    async def txn(self, compare: Sequence[Compare], success: Sequence[Op],
                  failure: Sequence[Op] = ()) -> TxnResult:
        raise StoreUnavailable("connection refused")


def _client(api: ServedApi) -> httpx.Client:
    return httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {api.token}"})


def _their_edit(store: Store) -> Awaitable[int]:
    return store.put(job_key("backup"), OTHER)


def test_a_pause_that_loses_a_race_answers_409_and_keeps_the_other_edit(
    make_api: Callable[..., ServedApi]
) -> None:
    api = make_api(wrap=InterposingStore)
    store = api.store
    assert isinstance(store, InterposingStore)
    with _client(api) as client:
        client.put("/jobs/backup", json=BACKUP).raise_for_status()
        store.before_txn = _their_edit
        answer = client.post("/jobs/backup/pause")
        assert answer.status_code == 409
        assert "changed concurrently" in answer.json()["detail"]
        assert "retry" in answer.json()["detail"]
        assert client.get("/jobs/backup").json()["command"] == "theirs.sh"


def test_creating_a_job_someone_else_just_created_answers_409(
    make_api: Callable[..., ServedApi]
) -> None:
    api = make_api(wrap=InterposingStore)
    assert isinstance(api.store, InterposingStore)
    api.store.before_txn = _their_edit
    with _client(api) as client:
        assert client.put("/jobs/backup", json=BACKUP).status_code == 409
        assert client.get("/jobs/backup").json()["command"] == "theirs.sh"


def test_an_apply_that_loses_a_race_answers_409_and_writes_nothing_of_the_file(
    make_api: Callable[..., ServedApi]
) -> None:
    api = make_api(wrap=InterposingStore)
    store = api.store
    assert isinstance(store, InterposingStore)
    toml = '[[job]]\nname = "backup"\nschedule = "0 6 * * *"\ncommand = "backup.sh"\n' \
           '[[job]]\nname = "new"\nschedule = "0 6 * * *"\ncommand = "new.sh"\n'
    with _client(api) as client:
        client.put("/jobs/backup", json={**BACKUP, "command": "old.sh"}).raise_for_status()
        store.before_txn = _their_edit
        answer = client.post("/jobs/apply", json={"toml": toml})
        assert answer.status_code == 409
        assert client.get("/jobs/new").status_code == 404
        assert client.get("/jobs/backup").json()["command"] == "theirs.sh"


def test_a_store_that_is_down_answers_503_while_healthz_still_answers(
    make_api: Callable[..., ServedApi]
) -> None:
    api = make_api(wrap=DownStore)
    with _client(api) as client:
        for method, path in (("GET", "/jobs"), ("GET", "/runs"), ("GET", "/status"),
                             ("POST", "/jobs/backup/pause")):
            answer = client.request(method, path)
            assert answer.status_code == 503, (method, path)
            assert "store unavailable" in answer.json()["detail"]
        assert client.get("/healthz").status_code == 200
