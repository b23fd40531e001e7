"""The reference app under ``Mount("/v1", ...)``, for ``uvicorn --factory``."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route

from examples.reference_app.app import create_app


async def _outer_health(request: Request) -> Response:
    # The outer app's own probe, for UvicornServer's start-up wait; the mounted app's
    # probe is /v1/healthz.
    return PlainTextResponse("ok")


def create_mounted_app() -> Starlette:
    """Return an outer app serving the hardened reference app below ``/v1``."""
    return Starlette(routes=[Route("/healthz", _outer_health), Mount("/v1", app=create_app())])
