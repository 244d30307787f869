"""``/notifiers``: where people are told about launches (see
:mod:`distcron.jobs.notifier`). A notifier's URL may hold a secret (a webhook's
token): without the API token it is shown without its user info and query."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, status
from pydantic import ValidationError

from distcron.api.auth import Authorized, require_token
from distcron.api.context import Context
from distcron.api.models import ERRORS
from distcron.errors import Conflict, JobSpecError
from distcron.jobs import API_SOURCE, OwnedByFile
from distcron.jobs.jobset import is_file_source
from distcron.jobs.journal import IN_PROGRESS, no_apply
from distcron.jobs.notifier import NotifierSpec
from distcron.notify.senders import shown_url
from distcron.store import Delete, Put
from distcron.store.layout import NOTIFIERS, name_of, notifier_key

router = APIRouter(tags=["notifiers"], responses=ERRORS)


def _shown(spec: NotifierSpec, authorized: bool) -> NotifierSpec:
    return spec if authorized else spec.model_copy(update={"url": shown_url(spec.url)})


@router.get("/notifiers", response_model=list[NotifierSpec])
async def list_notifiers(context: Context, authorized: Authorized) -> list[NotifierSpec]:
    kvs, _ = await context.store.range(NOTIFIERS)
    return [_shown(NotifierSpec.from_json(kv.value, source=name_of(kv.key, NOTIFIERS)),
                   authorized) for kv in kvs]


async def _may_change(context: Context, name: str, take_over: bool) -> None:
    """409 for a notifier a replica's config file declares, unless taken over."""
    kv = await context.store.get(notifier_key(name))
    if kv is None or take_over:
        return
    source = NotifierSpec.from_json(kv.value, source=kv.key).source
    if is_file_source(source):
        assert source is not None
        raise HTTPException(status.HTTP_409_CONFLICT,
                            str(OwnedByFile({name: source}, kind="notifier")))


@router.put("/notifiers/{name}", response_model=NotifierSpec,
            dependencies=[Depends(require_token)])
async def put_notifier(name: str, body: Annotated[dict[str, Any], Body()],
                       context: Context, take_over: bool = False) -> NotifierSpec:
    """Create or replace a notifier: ``{"url": "https://…" | "mailto:…"}``; it is the
    API's (a config file's is changed only with ``take_over=true``)."""
    await _may_change(context, name, take_over)
    body = {key: value for key, value in body.items() if key != "source"}
    try:
        spec = NotifierSpec.model_validate({**body, "name": name, "source": API_SOURCE})
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(part) for part in problem["loc"]) or "body"
        raise JobSpecError(str(problem["msg"]).removeprefix("Value error, "),
                           field=f"notifier {name!r}, {where}") from None
    written = await context.store.txn([no_apply()],
                                      [Put(notifier_key(name), spec.to_json().encode())])
    if not written.succeeded:
        raise Conflict(notifier_key(name), IN_PROGRESS)
    return spec


@router.delete("/notifiers/{name}", dependencies=[Depends(require_token)])
async def remove_notifier(name: str, context: Context,
                          take_over: bool = False) -> dict[str, str]:
    await _may_change(context, name, take_over)
    result = await context.store.txn([no_apply()], [Delete(notifier_key(name))])
    if not result.succeeded:
        raise Conflict(notifier_key(name), IN_PROGRESS)
    if not result.results[0]:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"notifier {name!r} not found")
    return {"removed": name}
