"""The path parameters a request will be routed with, found before routing it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Host, Mount, Route

from hardenkit.auth._route_params import route_path_params


async def endpoint(request: Request) -> Response:
    return PlainTextResponse("ok")


def scope_for(app: Any, path: str, *, host: str = "api.example.com") -> dict[str, Any]:
    return {
        "type": "http",
        "method": "GET",
        "path": path,
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", host.encode())],
        "app": app,
    }


def test_a_starlette_route_gives_its_parameters() -> None:
    app = Starlette(routes=[Route("/tenants/{tenant_id}/items/{item:int}", endpoint)])
    params = route_path_params(scope_for(app, "/tenants/acme/items/7"))
    assert params == {"tenant_id": "acme", "item": 7}


def test_a_path_no_route_matches_has_no_parameters() -> None:
    app = Starlette(routes=[Route("/tenants/{tenant_id}", endpoint)])
    assert route_path_params(scope_for(app, "/elsewhere")) is None


def test_a_route_for_another_method_is_not_a_match() -> None:
    # A partial match: the router answers 405, no endpoint sees the parameters.
    app = Starlette(routes=[Route("/tenants/{tenant_id}", endpoint, methods=["POST"])])
    assert route_path_params(scope_for(app, "/tenants/acme")) is None


def test_mounts_and_hosts_add_their_own_parameters() -> None:
    inner = Mount("/orgs/{org_id}", routes=[Route("/tenants/{tenant_id}", endpoint)])
    app = Starlette(routes=[Host("{region}.example.com", app=Starlette(routes=[inner]))])
    params = route_path_params(scope_for(app, "/orgs/o1/tenants/acme", host="eu.example.com"))
    assert params == {"region": "eu", "org_id": "o1", "tenant_id": "acme"}


def test_an_included_fastapi_router_gives_its_parameters() -> None:
    router = APIRouter(prefix="/tenants/{tenant_id}")

    @router.get("/items/{item_id}")
    async def item(tenant_id: str, item_id: str) -> dict[str, str]:
        return {}

    app = FastAPI()
    app.include_router(router)
    params = route_path_params(scope_for(app, "/tenants/acme/items/i9"))
    assert params == {"tenant_id": "acme", "item_id": "i9"}


def test_a_scope_without_an_app_has_no_parameters() -> None:
    scope = scope_for(None, "/tenants/acme")
    assert route_path_params(scope) is None
