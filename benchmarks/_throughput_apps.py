"""Two apps with the same route, for the throughput comparison under uvicorn.

``bare`` is plain Starlette; ``hardened`` is the same route behind ``hardenkit.install``
with the full stack (request ids, proxies, metrics, headers, errors, timeout, both rate
limits with limits high enough never to refuse, JWT auth with tenant binding). Settings
come from ``HARDENKIT_*`` variables set by the benchmark.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hardenkit import get_principal, install, load_settings


async def me(request: Request) -> Response:
    principal = get_principal()
    subject = principal.subject if principal else "alice"
    tenant = principal.tenant if principal else "acme"
    return JSONResponse({"subject": subject, "tenant": tenant})


def bare() -> Starlette:
    return Starlette(routes=[Route("/api/me", me)])


def hardened() -> Starlette:
    app = Starlette(routes=[Route("/api/me", me)])
    install(app, load_settings())
    return app
