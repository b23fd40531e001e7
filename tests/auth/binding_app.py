"""Apps the tenant-binding tests serve under a real uvicorn (settings from the env)."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hardenkit import install


async def echo(request: Request) -> Response:
    principal = request.state.principal
    return JSONResponse(
        {
            "tenant": principal.tenant,
            "tenant_header": request.headers.getlist("x-tenant-id"),
            "path_params": request.path_params,
            "query": request.query_params.getlist("tenant_id"),
        }
    )


def _routes() -> list[Route]:
    return [
        Route("/orgs/{org_id}/things", echo),
        Route("/tenants/{tenant_id}/items", echo),
        Route("/items", echo),
    ]


app = Starlette(routes=_routes())
install(app)


def late_route_app() -> Starlette:
    """An app whose tenant route is added after ``install()`` (as FastAPI decorators are)."""
    late = Starlette(routes=[Route("/items", echo)])
    install(late)
    late.add_route("/orgs/{org_id}/things", echo)
    return late
