"""public() and exempt(): route-level marks the auth and rate-limit layers honour."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Host, Match, Mount, Route, Router, WebSocketRoute
from starlette.testclient import TestClient, WebSocketDenialResponse
from starlette.types import Scope
from starlette.websockets import WebSocket

from examples.reference_app.settings import DEMO_DEFAULTS
from hardenkit import HardenSettings, exempt, install, public
from hardenkit._marks import PUBLIC, MarkedRoutes, marks_of

Endpoint = Callable[[Request], Awaitable[Response]]


async def hello(request: Request) -> Response:
    return JSONResponse({"path": request.url.path})


def marked(mark: Callable[[Endpoint], Endpoint]) -> Endpoint:
    # A mark stays on its function: each route gets a function of its own.
    async def endpoint(request: Request) -> Response:
        return await hello(request)

    return mark(endpoint)


def app_with(*routes: BaseRoute, **overrides: Any) -> TestClient:
    return installed(Starlette(routes=list(routes)), **overrides)


def installed(app: Starlette, **overrides: Any) -> TestClient:
    install(app, HardenSettings(**{**DEMO_DEFAULTS, **overrides}))
    return TestClient(app)


def test_a_public_route_is_served_without_a_token_and_its_neighbours_are_not() -> None:
    client = app_with(Route("/status/{component}", marked(public())), Route("/reports", hello))
    assert client.get("/status/db").status_code == 200
    assert client.get("/reports").status_code == 401


def test_a_public_route_inside_a_mount_is_public_under_the_mount_prefix() -> None:
    client = app_with(Mount("/v1", routes=[Route("/status", marked(public())), Route("/x", hello)]))
    assert client.get("/v1/status").status_code == 200
    assert client.get("/v1/x").status_code == 401


def test_an_unmarked_route_that_shadows_a_public_template_stays_protected() -> None:
    # The router serves /files/secret with the first route: the mark of the second,
    # whose template also matches, must not open it.
    client = app_with(Route("/files/secret", hello), Route("/files/{name}", marked(public())))
    assert client.get("/files/readme").status_code == 200
    assert client.get("/files/secret").status_code == 401


def test_a_public_mark_is_for_its_methods_only() -> None:
    client = app_with(
        Route("/feedback", marked(public()), methods=["GET"]),
        Route("/feedback", hello, methods=["POST"]),
    )
    assert client.get("/feedback").status_code == 200
    assert client.post("/feedback").status_code == 401


def test_an_exempt_route_is_never_limited_and_others_are() -> None:
    client = app_with(
        Route("/ping", marked(exempt())),
        Route("/news", hello),
        public_paths=["/ping", "/news"],
        rate_limit_default="2/hour",
    )
    assert [client.get("/ping").status_code for _ in range(4)] == [200] * 4
    assert "ratelimit" not in client.get("/ping").headers
    assert [client.get("/news").status_code for _ in range(3)] == [200, 200, 429]


segments = st.sampled_from(["a", "b", "files", "{name{i}}", "{item{i}:int}", "{rest{i}:path}"])
templates = st.lists(segments, min_size=1, max_size=3).map(
    # Each parameter gets a name of its own (Starlette refuses a repeated one).
    lambda parts: "/" + "/".join(part.replace("{i}", str(i)) for i, part in enumerate(parts))
)
paths = st.lists(st.sampled_from(["a", "b", "files", "7", "x/y"]), min_size=1, max_size=3).map(
    lambda parts: "/" + "/".join(parts)
)


@settings(max_examples=300, deadline=None)
@given(
    table=st.lists(
        st.tuples(templates, st.booleans(), st.sampled_from([("GET",), ("POST",), None])),
        min_size=1,
        max_size=8,
    ),
    path=paths,
    method=st.sampled_from(["GET", "POST"]),
)
def test_the_marked_answer_is_the_mark_of_the_route_starlette_would_serve(
    table: list[tuple[str, bool, tuple[str, ...] | None]], path: str, method: str
) -> None:
    routes = [
        Route(template, marked(public()) if is_public else marked(lambda e: e), methods=methods)
        for template, is_public, methods in table
    ]
    app = Starlette(routes=routes)
    scope = {"type": "http", "app": app, "path": path, "root_path": "", "method": method}
    served = next((route for route in routes if route.matches(dict(scope))[0] is Match.FULL), None)
    expected = served is not None and PUBLIC in marks_of(served.endpoint)
    assert MarkedRoutes(PUBLIC).matches(scope) is expected


async def opaque_admin(scope: Any, receive: Any, send: Any) -> None:
    """A mounted app with no router to look into (a WSGI app, a raw ASGI app)."""
    await JSONResponse({"admin": "data"})(scope, receive, send)


def test_a_public_catch_all_does_not_open_a_mounted_app_listed_before_it() -> None:
    # The SPA shape of the attacker review: the mount serves /admin/..., not the catch-all.
    client = app_with(
        Route("/api/me", hello),
        Mount("/admin", app=opaque_admin),
        Mount("/docs-site", routes=[Route("/index", hello)]),
        Route("/{full_path:path}", marked(public())),
    )
    assert client.get("/anything/else").status_code == 200
    assert client.get("/admin/users").status_code == 401
    # The mount matches below /admin only: /admin itself is the catch-all's, and public.
    assert client.get("/admin").json() == {"path": "/admin"}
    # A mounted router that has no such route answers 404 itself: never the catch-all.
    assert client.get("/docs-site/index").status_code == 401
    assert client.get("/docs-site/missing").status_code == 401


def test_a_public_http_route_does_not_open_a_websocket_route_on_the_same_path() -> None:
    async def live(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text("secret")
        await websocket.close()

    client = app_with(Route("/live", marked(public())), WebSocketRoute("/live", live))
    assert client.get("/live").status_code == 200
    with pytest.raises(WebSocketDenialResponse) as denied, client.websocket_connect("/live"):
        pass
    assert denied.value.status_code == 401


def test_a_public_route_of_one_host_does_not_open_the_routes_of_another() -> None:
    client = app_with(
        Host("docs.example.com", Router([Route("/{page:path}", marked(public()))])),
        Route("/admin/data", hello),
    )
    assert client.get("/admin/data", headers={"Host": "docs.example.com"}).status_code == 200
    assert client.get("/admin/data", headers={"Host": "api.example.com"}).status_code == 401
    # The same path asked again for the other host: the answer is not taken from a cache.
    assert client.get("/admin/data", headers={"Host": "docs.example.com"}).status_code == 200


def test_a_public_route_inside_a_mount_wrapped_in_middleware_is_found() -> None:
    inner = Starlette(routes=[Route("/status", marked(public())), Route("/x", hello)])
    client = app_with(Mount("/w", app=GZipMiddleware(inner)))
    assert client.get("/w/status").status_code == 200
    assert client.get("/w/x").status_code == 401


def test_a_public_route_does_not_open_a_host_of_an_included_fastapi_router() -> None:
    """``APIRouter.host()`` inside ``include_router``: FastAPI wraps the Host in a context.

    Attacker review: the Host was not seen, so the answer for a path was cached without
    the Host header; a request for the public route's host opened the admin host's route.
    """
    router = APIRouter()
    router.host("admin.example.com", app=Router([Route("/items", hello)]))
    app = FastAPI()
    app.include_router(router)

    @app.get("/items")
    @public()
    async def items() -> dict[str, str]:
        return {"public": "yes"}

    client = installed(app)
    assert client.get("/items", headers={"Host": "www.example.com"}).status_code == 200
    assert client.get("/items", headers={"Host": "admin.example.com"}).status_code == 401
    assert client.get("/items", headers={"Host": "www.example.com"}).status_code == 200


def test_a_public_route_in_a_mount_of_an_included_fastapi_router_is_found() -> None:
    router = APIRouter()
    router.mount("/w", app=Starlette(routes=[Route("/status", marked(public()))]))
    router.add_route("/open", marked(public()))
    app = FastAPI()
    app.include_router(router, prefix="/v1")
    client = installed(app)
    assert client.get("/v1/w/status").status_code == 200
    assert client.get("/v1/open").status_code == 200


def test_a_route_added_to_a_mounted_router_after_requests_is_not_answered_from_the_cache() -> None:
    sub = Router([Route("/{page}", marked(public()))])
    client = app_with(Mount("/m", app=sub))
    assert client.get("/m/admin").status_code == 200
    sub.routes.insert(0, Route("/admin", hello))  # now serves /m/admin, unmarked
    assert client.get("/m/admin").status_code == 401


class CaseInsensitiveRoute(APIRoute):
    """A common recipe: the route class lowercases the path before matching."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        return super().matches({**scope, "path": scope["path"].lower()})


def test_an_included_router_with_its_own_route_class_is_matched_as_fastapi_matches_it() -> None:
    """Attacker review: FastAPI matches an included router's routes with their class's own
    ``matches``; hardenkit used the candidate's, and took /api/files/SECRET for the public
    /api/files/{name} while FastAPI served the protected /files/secret."""
    files = APIRouter(route_class=CaseInsensitiveRoute)

    @files.get("/files/secret")
    async def secret() -> dict[str, str]:
        return {"served": "secret"}

    @files.get("/files/{name}")
    @public()
    async def readme(name: str) -> dict[str, str]:
        return {"served": name}

    app = FastAPI()
    app.include_router(files, prefix="/api")
    client = installed(app)
    assert client.get("/api/files/readme").status_code == 200
    assert client.get("/api/files/secret").status_code == 401
    assert client.get("/api/files/SECRET").status_code == 401


def test_a_route_class_matching_on_a_header_is_not_answered_from_the_cache() -> None:
    """Attacker review: versions picked by a header (the route class reads it); the answer
    for the public version was cached by path and given to the protected one."""

    class VersionedRoute(APIRoute):
        def matches(self, scope: Scope) -> tuple[Match, Scope]:
            match, child = super().matches(scope)
            wanted = dict(scope["headers"]).get(b"accept-version", b"1").decode()
            if match is not Match.NONE and getattr(self.endpoint, "version", "1") != wanted:
                return Match.NONE, {}
            return match, child

    app = FastAPI()
    app.router.route_class = VersionedRoute

    async def catalog_v1() -> dict[str, int]:
        return {"v": 1}

    async def catalog_v2() -> dict[str, int]:
        return {"v": 2}

    catalog_v1.version = "1"  # type: ignore[attr-defined]
    catalog_v2.version = "2"  # type: ignore[attr-defined]
    app.get("/catalog")(public()(catalog_v1))
    app.get("/catalog")(catalog_v2)
    client = installed(app)
    assert client.get("/catalog", headers={"Accept-Version": "1"}).json() == {"v": 1}
    assert client.get("/catalog", headers={"Accept-Version": "2"}).status_code == 401


def test_a_route_added_later_to_a_wrapped_mount_that_had_none_is_seen() -> None:
    inner = Starlette(routes=[])
    client = app_with(Mount("/w", app=GZipMiddleware(inner)))
    assert client.get("/w/status").status_code == 401
    inner.router.routes.append(Route("/status", marked(public())))
    assert client.get("/w/status").status_code == 200
