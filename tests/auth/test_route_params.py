"""The path parameters a request will be routed with, found before routing it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI
from starlette.applications import Starlette
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Host, Mount, Route

from hardenkit.auth._binding import TenantBinding
from hardenkit.auth._route_params import RouteParamNames, route_path_params


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


class CountingRoute(Route):
    """A route that counts how often something tries to match a request against it."""

    calls = 0

    def matches(self, scope: Any) -> Any:
        CountingRoute.calls += 1
        return super().matches(scope)


def test_an_app_without_a_bound_parameter_is_not_routed_for_the_binding() -> None:
    CountingRoute.calls = 0
    app = Starlette(routes=[CountingRoute("/items/{item_id}", endpoint)])
    names = RouteParamNames(["tenant_id"])
    assert not names.in_app_of(scope_for(app, "/items/1"))
    binding = TenantBinding(path_params=["tenant_id"], query_params=[], tenant_status=None)
    assert binding.requested_tenants(scope_for(app, "/items/1"), []) == []
    assert CountingRoute.calls == 0


def test_an_app_with_a_bound_parameter_is_routed_once_per_request() -> None:
    CountingRoute.calls = 0
    app = Starlette(
        routes=[
            CountingRoute("/items", endpoint),
            CountingRoute("/tenants/{tenant_id}/items", endpoint),
        ]
    )
    binding = TenantBinding(path_params=["tenant_id"], query_params=[], tenant_status=None)
    requested = binding.requested_tenants(scope_for(app, "/tenants/acme/items"), [])
    assert requested == [("path", "acme")]
    assert CountingRoute.calls == 2  # each route tried once, in order


def test_a_bound_parameter_added_after_the_first_request_is_seen() -> None:
    inner = Mount("/v1", routes=[Route("/items", endpoint)])
    app = Starlette(routes=[Route("/health", endpoint), inner])
    names = RouteParamNames(["tenant_id"])
    assert not names.in_app_of(scope_for(app, "/v1/items"))
    inner.routes.append(Route("/tenants/{tenant_id}", endpoint))
    assert names.in_app_of(scope_for(app, "/v1/tenants/acme"))
    top = Starlette(routes=[Route("/items", endpoint)])
    assert not names.in_app_of(scope_for(top, "/items"))
    top.add_route("/orgs/{tenant_id}", endpoint)
    assert names.in_app_of(scope_for(top, "/orgs/acme"))


def test_bound_parameters_in_hosts_and_included_routers_are_seen() -> None:
    names = RouteParamNames(["tenant_id"])
    hosted = Starlette(
        routes=[Host("{tenant_id}.example.com", app=Starlette(routes=[Route("/", endpoint)]))]
    )
    assert names.in_app_of(scope_for(hosted, "/"))
    router = APIRouter()

    @router.get("/items")
    async def items(tenant_id: str) -> dict[str, str]:
        return {}

    app = FastAPI()
    app.include_router(router, prefix="/tenants/{tenant_id}")
    assert names.in_app_of(scope_for(app, "/tenants/acme/items"))
    later = APIRouter()
    app.include_router(later)
    plain = FastAPI()
    plain.include_router(later)
    assert not names.in_app_of(scope_for(plain, "/x"))

    @later.get("/orgs/{tenant_id}")
    async def org(tenant_id: str) -> dict[str, str]:
        return {}

    assert names.in_app_of(scope_for(plain, "/orgs/acme"))


def test_a_tenant_parameter_inside_a_mount_wrapped_in_middleware_is_seen_and_bound() -> None:
    # The attacker review's shape: GZipMiddleware hides the sub-app's routes from Mount.routes.
    sub = Starlette(routes=[Route("/tenants/{tenant_id}/items", endpoint)])
    app = Starlette(routes=[Mount("/w", app=GZipMiddleware(sub))])
    assert RouteParamNames(["tenant_id"]).in_app_of(scope_for(app, "/w/tenants/globex/items"))
    binding = TenantBinding(path_params=["tenant_id"], query_params=[], tenant_status=None)
    requested = binding.requested_tenants(scope_for(app, "/w/tenants/globex/items"), [])
    assert requested == [("path", "globex")]


def test_a_mounted_router_with_no_such_route_gives_no_parameters_from_later_routes() -> None:
    # The mounted router answers 404: a later route whose template matches never serves.
    app = Starlette(
        routes=[
            Mount("/v1", routes=[Route("/items", endpoint)]),
            Route("/{section}/{tenant_id}", endpoint),
        ]
    )
    assert route_path_params(scope_for(app, "/v1/acme")) is None
    assert route_path_params(scope_for(app, "/v2/acme")) == {"section": "v2", "tenant_id": "acme"}


def test_a_tenant_route_added_later_to_a_wrapped_mount_that_had_none_is_bound() -> None:
    sub = Starlette(routes=[])
    app = Starlette(routes=[Mount("/w", app=GZipMiddleware(sub))])
    names = RouteParamNames(["tenant_id"])
    assert not names.in_app_of(scope_for(app, "/w/tenants/globex/items"))
    sub.router.routes.append(Route("/tenants/{tenant_id}/items", endpoint))
    assert names.in_app_of(scope_for(app, "/w/tenants/globex/items"))
    assert route_path_params(scope_for(app, "/w/tenants/globex/items")) == {"tenant_id": "globex"}
