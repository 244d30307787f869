"""The FastAPI application: routers, error translation, and what handlers share."""

from __future__ import annotations

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry

from distcron import __version__
from distcron.api import apply, cluster, dashboard, jobs, notifiers, runs, snapshot
from distcron.api.context import ApiContext
from distcron.api.limits import BodyLimit
from distcron.api.view import ReplicaView
from distcron.clock import Clock, SystemClock
from distcron.errors import Conflict, JobSpecError, StoreUnavailable
from distcron.jobs import JobSpecErrors
from distcron.store import Store


def create_app(
    store: Store,
    replica: ReplicaView,
    token: str | None,
    registry: CollectorRegistry,
    *,
    clock: Clock | None = None,
) -> FastAPI:
    """The API of one replica. ``token`` None (or empty) refuses every change."""
    app = FastAPI(
        title="distcron",
        version=__version__,
        description="Jobs, runs and cluster state of a distcron cluster.",
        # Swagger UI and ReDoc load their assets from a CDN: blank offline. The schema
        # stays at /openapi.json; the dashboard at / is the page for people.
        docs_url=None, redoc_url=None,
    )
    app.state.distcron = ApiContext(
        store=store, replica=replica, token=token or None, registry=registry,
        clock=clock or SystemClock(),
    )
    for module in (cluster, jobs, apply, runs, notifiers, snapshot):
        app.include_router(module.router)
    dashboard.mount(app)
    app.add_middleware(BodyLimit)
    app.add_exception_handler(StoreUnavailable, _store_unavailable)
    app.add_exception_handler(Conflict, _conflict)
    app.add_exception_handler(JobSpecError, _bad_spec)
    app.add_exception_handler(RequestValidationError, _bad_request)
    return app


async def _store_unavailable(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": f"store unavailable: {exc}"},
                        status.HTTP_503_SERVICE_UNAVAILABLE)


async def _conflict(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": f"{exc}; retry"}, status.HTTP_409_CONFLICT)


async def _bad_spec(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, JobSpecError)
    return JSONResponse({"detail": spec_errors(exc)}, status.HTTP_422_UNPROCESSABLE_CONTENT)


async def _bad_request(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's own validation errors, in the shape of every other 422 (Problems)."""
    assert isinstance(exc, RequestValidationError)
    problems = [
        {"job": None, "field": ".".join(str(part) for part in error.get("loc", ())[1:]) or None,
         "line": None, "msg": str(error.get("msg", "invalid"))}
        for error in exc.errors()
    ]
    return JSONResponse({"detail": problems}, status.HTTP_422_UNPROCESSABLE_CONTENT)


def spec_errors(exc: JobSpecError) -> list[dict[str, object]]:
    """Every problem of a rejected spec or file, each naming its job, field and line."""
    if not isinstance(exc, JobSpecErrors):
        return [{"job": exc.job, "field": exc.field, "line": None, "msg": str(exc)}]
    return [
        {"job": p.job, "field": p.field, "line": p.line,
         "msg": str(p) if p.line is None else f"{exc.source}:{p.line}: {p}"}
        for p in exc.problems
    ]
