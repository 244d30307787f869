"""The web dashboard every replica serves at ``/``: pages rendered on the server
(Jinja2) from templates and static files shipped in the package, with a little
JavaScript for the actions and for following a run's output; nothing from elsewhere."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from distcron.api.dashboard.pages import router

STATIC_PATH = "/ui/static"


def mount(app: FastAPI) -> None:
    app.include_router(router)
    app.mount(STATIC_PATH, StaticFiles(packages=[("distcron.api.dashboard", "static")]),
              name="dashboard-static")


__all__ = ["mount", "router"]
