"""An app for HTTP/1.1 pipelining on a real uvicorn (tests/e2e/test_pipelining_e2e.py).

uvicorn starts a pipelined request from inside the previous one's last send, so the new
request's task starts with a copy of that request's context: its principal, auth
verdicts, deadline and the identity its log lines carry must not carry over.
"""

from __future__ import annotations

import asyncio

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hardenkit import HardenSettings, configure_logging, install, public
from hardenkit.auth import hash_api_key
from hardenkit.context import principal_var, remaining_time

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


async def crash(request: Request) -> Response:
    raise RuntimeError("handler bug")


@public()
async def stream(request: Request) -> Response:
    return JSONResponse({"remaining": remaining_time()})


def create_app() -> Starlette:
    """The app: a slow /me, an API-key route, a tenant route and a public page."""
    app = Starlette(
        routes=[
            Route("/me", me),
            Route("/internal/export", export),
            Route("/t/{tenant_id}/items", items),
            Route("/news", news),
            Route("/crash", crash),
            Route("/stream", stream),
        ]
    )
    settings = HardenSettings(
        jwt_secret=SECRET,
        jwt_issuer=ISSUER,
        jwt_audience=AUDIENCE,
        api_keys=f"ops:{hash_api_key(API_KEY)}",
        api_key_paths=["/internal/*"],
        public_paths=["/news"],
        rate_limit_tenant="3/minute",
        log_format="json",
        request_timeout=1.0,
        streaming_paths=["/stream"],
    )
    configure_logging(settings)
    install(app, settings)
    return app
