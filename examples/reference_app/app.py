"""The reference service: a Starlette app hardened with ``hardenkit.install``.

Run it with ``make demo`` (in-memory stores) or ``make demo-redis``.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hardenkit import HardenSettings, install, load_settings


async def index(request: Request) -> Response:
    return JSONResponse({"service": "hardenkit reference app", "docs": "/docs"})


def create_app(settings: HardenSettings | None = None) -> Starlette:
    """Build the reference app with ``settings`` (from the environment when omitted)."""
    settings = settings or load_settings()
    app = Starlette(routes=[Route("/", index)])
    install(app, settings)
    return app


app = create_app()
