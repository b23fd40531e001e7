"""An app whose own middleware, added before ``install()``, rewrites the path inside
the stack: a dot-segment normalizer and trailing-slash stripper, and a version-prefix
stripper (served under ``--root-path /svc``), with a ``@public()`` catch-all and public
``/docs*``. For ``uvicorn --factory`` (tests/e2e/test_rewrite_e2e.py).
"""

from __future__ import annotations

import posixpath

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from hardenkit import HardenSettings, install, public

SECRET = "e2e-rewrite-" + "k" * 52
ISSUER = "https://issuer.rewrite.invalid"
AUDIENCE = "rewrite-api"
WEBHOOK_SECRET = "whsec_" + "R" * 43


class NormalizePath:
    """Resolves dot segments and drops a trailing slash, on a copy of the scope."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] != "/":
            scope = {**scope, "path": posixpath.normpath(scope["path"])}
        await self.app(scope, receive, send)


class StripVersion:
    """Serves ``/api/v1/...`` as ``/...``: a rewrite no spelling of the path foresees."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/svc/api/v1/"):
            scope = {**scope, "path": "/svc" + scope["path"][len("/svc/api/v1") :]}
        await self.app(scope, receive, send)


async def items(request: Request) -> Response:
    return JSONResponse({"tenant": request.path_params["tenant_id"], "items": ["secret"]})


async def pay(request: Request) -> Response:
    return JSONResponse({"paid": True, "bytes": len(await request.body())})


@public()
async def login(request: Request) -> Response:
    return JSONResponse({"error": "invalid credentials"}, status_code=401)


@public()
async def spa(request: Request) -> Response:
    return JSONResponse({"page": "index"})


def create_app() -> Starlette:
    """The app, hardened with a login limit of 3 and a tenant limit of 4 per minute."""
    app = Starlette(
        routes=[
            Route("/tenants/{tenant_id}/items", items),
            Route("/webhooks/pay", pay, methods=["POST"]),
            Route("/auth/token", login, methods=["POST"]),
            Route("/{rest:path}", spa, methods=["GET", "POST"]),
        ]
    )
    app.add_middleware(StripVersion)  # before install(): inside hardenkit's layers
    app.add_middleware(NormalizePath)
    install(
        app,
        HardenSettings(
            jwt_secret=SECRET,
            jwt_issuer=ISSUER,
            jwt_audience=AUDIENCE,
            public_paths=["/docs*", "/auth/*", "/webhooks/*"],
            webhook_secret=WEBHOOK_SECRET,
            webhook_paths=["/webhooks/*"],
            rate_limit_auth="3/minute",
            rate_limit_tenant="4/minute",
        ),
    )
    return app
