"""An app for HTTP/1.1 pipelining on a real uvicorn (tests/e2e/test_pipelining_e2e.py).

uvicorn starts a pipelined request from inside the previous one's last send, so the new
request's task starts with a copy of that request's context: its principal and auth
verdicts must not carry over.
"""

from __future__ import annotations

import asyncio

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hardenkit import HardenSettings, install, public
from hardenkit.auth import hash_api_key
from hardenkit.context import principal_var

SECRET = "e2e-pipelining-" + "q" * 49
ISSUER = "https://issuer.pipelining.invalid"
AUDIENCE = "pipelining-api"
API_KEY = "k-" + "p" * 40


async def me(request: Request) -> Response:
    await asyncio.sleep(0.3)  # the client's next request is queued behind this one
    principal = principal_var.get()
    return JSONResponse({"tenant": None if principal is None else principal.tenant})


async def export(request: Request) -> Response:
    principal = principal_var.get()
    return JSONResponse({"credential": None if principal is None else principal.credential})


async def items(request: Request) -> Response:
    return JSONResponse({"tenant": request.path_params["tenant_id"]})


@public()
async def news(request: Request) -> Response:
    principal = principal_var.get()
    return JSONResponse({"seen_as": None if principal is None else principal.tenant})


def create_app() -> Starlette:
    """The app: a slow /me, an API-key route, a tenant route and a public page."""
    app = Starlette(
        routes=[
            Route("/me", me),
            Route("/internal/export", export),
            Route("/t/{tenant_id}/items", items),
            Route("/news", news),
        ]
    )
    install(
        app,
        HardenSettings(
            jwt_secret=SECRET,
            jwt_issuer=ISSUER,
            jwt_audience=AUDIENCE,
            api_keys=f"ops:{hash_api_key(API_KEY)}",
            api_key_paths=["/internal/*"],
            public_paths=["/news"],
            rate_limit_tenant="3/minute",
        ),
    )
    return app
