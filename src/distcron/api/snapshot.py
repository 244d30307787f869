"""``GET /snapshot``: every key of distcron's state at one revision (see
:mod:`distcron.store.dump`). It holds every job's secrets: it needs the token."""

from __future__ import annotations

import io

from fastapi import APIRouter, Depends
from fastapi.responses import PlainTextResponse

from distcron.api.auth import require_token
from distcron.api.context import Context
from distcron.api.models import ERRORS
from distcron.store.dump import save

router = APIRouter(tags=["snapshot"], responses=ERRORS)


@router.get("/snapshot", response_class=PlainTextResponse,
            dependencies=[Depends(require_token)])
async def snapshot(context: Context) -> PlainTextResponse:
    """A snapshot file (JSON lines), for `distcron snapshot restore`."""
    out = io.StringIO()
    summary = await save(context.store, out, context.clock.now())
    return PlainTextResponse(out.getvalue(), media_type="application/x-ndjson", headers={
        "Distcron-Snapshot-Revision": str(summary.revision)})
