"""The route that serves a request is held to what auth judged, at the endpoint.

Auth predicts the route before routing (``hardenkit._routes.serving_route``): whether it
is public, which tenant its path names. When the prediction misses (a router or a
middleware inside the stack that routes otherwise, a FastAPI release that selects
otherwise), the endpoint reached is checked before its handler, dependencies or
background tasks run (``hardenkit.auth._checkpoint``): a 401 or 403, never another
tenant's data, never a protected route without a credential.
"""

from __future__ import annotations

import contextlib
import posixpath
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote

import anyio
import pytest
from fastapi import BackgroundTasks, Depends, FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route, Router, WebSocketRoute
from starlette.testclient import TestClient, WebSocketDenialResponse
from starlette.types import Message, Receive, Scope, Send
from starlette.websockets import WebSocket
from structlog.testing import capture_logs

from hardenkit import AuthMiddleware, HardenSettings, JWTVerifier, install, public, sign_webhook
from hardenkit.auth import _binding, hash_api_key
from hardenkit.errors import ErrorMiddleware
from tests.auth.support import AUDIENCE, ISSUER, SECRET, hs256

WRITES: list[str] = []


async def items(request: Request) -> Response:
    return JSONResponse({"tenant": request.path_params["tenant_id"], "items": ["secret"]})


async def create_item(request: Request) -> Response:
    body = await request.body()
    WRITES.append(f"{request.path_params['tenant_id']}:{body.decode()}")
    return JSONResponse({"created": True}, status_code=201)


@public()
async def refused_login(request: Request) -> Response:
    """A login route (public) that refuses every password: what the login limit counts."""
    return JSONResponse({"detail": "bad password"}, status_code=401)


async def feed(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_json({"tenant": websocket.path_params["tenant_id"]})
    await websocket.close()


def routes() -> list[Any]:
    """Fresh route objects for each app: the checkpoint wraps the ones an app serves."""
    return [
        Route("/tenants/{tenant_id}/items", items),
        Route("/tenants/{tenant_id}/items", create_item, methods=["POST"]),
        WebSocketRoute("/tenants/{tenant_id}/feed", feed),
    ]


class VersionedRouter(Router):
    """Serves ``/v2/...`` with the same routes, rewriting the path in place: a router that
    routes otherwise than its routes' ``matches`` say (the prediction sees no route)."""

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and scope["path"].startswith("/v2/"):
            scope["path"] = scope["path"][3:]
        await super().app(scope, receive, send)


def protected_fastapi(app: Any) -> Any:
    app.add_middleware(
        AuthMiddleware, verifier=JWTVerifier(secret=SECRET, issuer=ISSUER, audience=[AUDIENCE])
    )
    app.add_middleware(ErrorMiddleware)
    return app


def protected(app: Starlette) -> Starlette:
    app.add_middleware(
        AuthMiddleware, verifier=JWTVerifier(secret=SECRET, issuer=ISSUER, audience=[AUDIENCE])
    )
    app.add_middleware(ErrorMiddleware)
    return app


def versioned_app() -> Starlette:
    app = Starlette()
    app.router = VersionedRouter(routes=routes())
    return protected(app)


@pytest.fixture
def prediction_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every route prediction misses, as a FastAPI release that routes otherwise would."""
    monkeypatch.setattr(_binding, "route_path_params", lambda scope: None)


TOKEN = hs256()  # of tenant acme


def auth() -> dict[str, str]:
    """Fresh headers each time: the websocket client adds its own to the dict it is given."""
    return {"Authorization": f"Bearer {TOKEN}"}


def test_a_router_the_prediction_does_not_know_is_refused_another_tenants_data() -> None:
    client = TestClient(versioned_app())
    with capture_logs() as logs:
        response = client.get("/v2/tenants/globex/items", headers=auth())
    assert response.status_code == 403
    assert response.json()["code"] == "TENANT_MISMATCH"
    assert "secret" not in response.text
    assert [log["event"] for log in logs if log["log_level"] == "error"] == [
        "path_rewritten_inside_the_stack",
        "tenant_binding_missed_the_route",
    ]
    # The caller's own tenant, through the same router, is served.
    own = client.get("/v2/tenants/acme/items", headers=auth())
    assert own.status_code == 200
    assert own.json()["tenant"] == "acme"


def test_a_path_rewritten_inside_the_stack_is_said_once_as_an_error_naming_the_cure() -> None:
    client = installed_with_inner_rewrite(*routes())
    with capture_logs() as logs:
        assert client.get("/tenants/acme/items", headers=auth()).status_code == 200
    assert "path_rewritten_inside_the_stack" not in [log["event"] for log in logs]
    with capture_logs() as logs:
        for _ in range(3):
            assert client.get("/tenants/acme/items/", headers=auth()).status_code == 200
    (said,) = [log for log in logs if log["event"] == "path_rewritten_inside_the_stack"]
    assert said["log_level"] == "error"
    assert (said["judged_path"], said["reached_path"]) == (
        "/tenants/acme/items/",
        "/tenants/acme/items",
    )
    assert "after install()" in said["detail"]


def test_a_mounted_app_is_not_taken_for_a_rewrite() -> None:
    inner = Router(routes=routes())
    app = Starlette(routes=[Mount("/v1", app=inner)])
    install(app, HardenSettings(jwt_secret=SECRET, jwt_issuer=ISSUER, jwt_audience=AUDIENCE))
    with capture_logs() as logs, TestClient(app) as client:
        assert client.get("/v1/tenants/acme/items", headers=auth()).status_code == 200
    assert "path_rewritten_inside_the_stack" not in [log["event"] for log in logs]


@pytest.mark.usefixtures("prediction_missing")
def test_a_missed_prediction_stops_a_write_before_the_handler_reads_its_body() -> None:
    WRITES.clear()
    client = TestClient(protected(Starlette(routes=routes())))
    response = client.post("/tenants/globex/items", headers=auth(), content=b"x")
    assert response.status_code == 403
    assert response.json()["code"] == "TENANT_MISMATCH"
    assert WRITES == []  # the handler's first receive raised: nothing written
    assert client.post("/tenants/acme/items", headers=auth(), content=b"y").status_code == 201
    assert WRITES == ["acme:y"]


@pytest.mark.usefixtures("prediction_missing")
def test_a_handler_that_swallows_the_refusal_still_answers_403() -> None:
    async def stubborn(request: Request) -> Response:
        with contextlib.suppress(Exception):  # what a careless handler does
            await request.body()
        return JSONResponse({"items": ["secret"]})

    app = protected(Starlette(routes=[Route("/tenants/{tenant_id}/x", stubborn, methods=["POST"])]))
    response = TestClient(app).post("/tenants/globex/x", headers=auth(), content=b"z")
    assert response.status_code == 403
    assert "secret" not in response.text


@pytest.mark.usefixtures("prediction_missing")
def test_a_missed_prediction_never_opens_a_websocket_of_another_tenant() -> None:
    client = TestClient(protected(Starlette(routes=routes())))
    with (
        pytest.raises(WebSocketDenialResponse) as denied,
        client.websocket_connect("/tenants/globex/feed", headers=auth()),
    ):
        pass
    assert denied.value.status_code == 403
    with client.websocket_connect("/tenants/acme/feed", headers=auth()) as websocket:
        assert websocket.receive_json() == {"tenant": "acme"}


def test_a_predicted_route_is_refused_before_the_handler_and_logs_no_miss() -> None:
    # The common case: the prediction and the router agree; the check after routing
    # finds nothing more to say.
    WRITES.clear()
    client = TestClient(protected(Starlette(routes=routes())))
    with capture_logs() as logs:
        response = client.post("/tenants/globex/items", headers=auth(), content=b"x")
        own = client.get("/tenants/acme/items", headers=auth())
    assert response.status_code == 403
    assert own.status_code == 200
    assert WRITES == []
    assert not [log for log in logs if log["event"] == "tenant_binding_missed_the_route"]


def test_a_tenant_an_outer_mount_routed_is_bound_though_the_app_names_none() -> None:
    # install() ran on a sub-app whose routes name no tenant; the app around it mounts it
    # under /tenants/{tenant_id}: the outer router set the tenant before this app's
    # AuthMiddleware ran (an attacker round read globex's items with acme's token).
    async def own_items(request: Request) -> Response:
        return JSONResponse({"tenant": request.path_params["tenant_id"], "items": ["secret"]})

    api = protected(Starlette(routes=[Route("/items", own_items)]))
    outer = Starlette(routes=[Mount("/tenants/{tenant_id}", app=api)])
    client = TestClient(outer)
    refused = client.get("/tenants/globex/items", headers=auth())
    assert refused.status_code == 403
    assert refused.json()["code"] == "TENANT_MISMATCH"
    assert "secret" not in refused.text
    assert client.get("/tenants/acme/items", headers=auth()).json()["tenant"] == "acme"


class StripTrailingSlash:
    """A user's middleware inside the stack (added before install()), rewriting a copy."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and len(path) > 1 and path.endswith("/"):
            scope = {**scope, "path": path.rstrip("/")}
        await self.app(scope, receive, send)


def installed_with_inner_rewrite(*routes: Any) -> TestClient:
    app = Starlette(routes=list(routes))
    app.add_middleware(StripTrailingSlash)
    install(app, HardenSettings(jwt_secret=SECRET, jwt_issuer=ISSUER, jwt_audience=AUDIENCE))
    return TestClient(app)


def test_an_inner_middleware_that_reroutes_a_copy_cannot_reach_another_tenant() -> None:
    WRITES.clear()

    async def delete_items(request: Request) -> Response:
        WRITES.append(f"deleted {request.path_params['tenant_id']}")
        return JSONResponse({"deleted": True})

    client = installed_with_inner_rewrite(
        *routes(), Route("/tenants/{tenant_id}/items", delete_items, methods=["DELETE"])
    )
    read = client.get("/tenants/globex/items/", headers=auth())
    deleted = client.delete("/tenants/globex/items/", headers=auth())
    assert (read.status_code, deleted.status_code) == (403, 403)
    assert "secret" not in read.text
    assert WRITES == []  # refused before the handler: nothing deleted
    assert client.get("/tenants/acme/items/", headers=auth()).json()["tenant"] == "acme"


def test_a_public_catch_all_predicted_never_opens_a_protected_route_without_a_token() -> None:
    # An SPA's @public catch-all matches the path as sent; the inner rewrite then routes
    # it to a protected route. Auth skipped the request as public; the endpoint refuses.
    @public()
    async def spa(request: Request) -> Response:
        return JSONResponse({"page": "index"})

    client = installed_with_inner_rewrite(*routes(), Route("/{rest:path}", spa))
    response = client.get("/tenants/globex/items/")
    assert response.status_code == 401
    assert response.json()["detail"] == "Authentication is required."
    assert "www-authenticate" in response.headers
    assert "secret" not in response.text
    assert client.get("/about").json() == {"page": "index"}  # the public route still is
    # A token is checked at the endpoint, as auth would have: its own tenant is served,
    # another's is refused (not every token turned away because the prediction missed).
    with capture_logs() as logs:
        own = client.get("/tenants/acme/items/", headers=auth())
        other = client.get("/tenants/globex/items/", headers=auth())
    assert own.status_code == 200
    assert own.json()["tenant"] == "acme"
    assert other.status_code == 403
    assert "secret" not in other.text
    assert "auth_checked_at_the_endpoint" in [log["event"] for log in logs]


@pytest.mark.usefixtures("prediction_missing")
def test_a_missed_prediction_runs_no_background_task_and_no_dependency() -> None:
    effects: list[str] = []

    def audit(tenant_id: str) -> Iterator[None]:
        effects.append(f"dependency {tenant_id}")
        yield
        effects.append(f"after {tenant_id}")

    app = FastAPI()

    @app.post("/tenants/{tenant_id}/rotate-key", dependencies=[Depends(audit)])
    async def rotate(tenant_id: str, tasks: BackgroundTasks) -> dict[str, bool]:
        effects.append(f"rotated {tenant_id}")
        tasks.add_task(effects.append, f"background {tenant_id}")
        return {"rotated": True}

    client = TestClient(protected_fastapi(app))
    assert client.post("/tenants/globex/rotate-key", headers=auth()).status_code == 403
    assert effects == []
    assert client.post("/tenants/acme/rotate-key", headers=auth()).status_code == 200
    assert sorted(effects) == ["after acme", "background acme", "dependency acme", "rotated acme"]


def test_a_route_added_after_the_first_request_is_guarded_too(
    prediction_missing: None,
) -> None:
    app = protected(Starlette(routes=[Route("/me", items)]))
    client = TestClient(app)
    assert client.get("/me", headers=auth()).status_code in (200, 500)  # routes seen once
    app.router.routes.append(Route("/late/{tenant_id}", items))
    response = client.get("/late/globex", headers=auth())
    assert response.status_code == 403
    assert "secret" not in response.text


def test_a_mount_whose_routes_cannot_be_seen_is_judged_when_its_app_routes() -> None:
    # A hand-written wrapper that keeps the sub-app under another name: hardenkit sees
    # neither its routes nor its {tenant_id}; what the sub-app routes to is judged on its
    # first receive or send.
    def closure(app: Any) -> Any:
        async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
            await app(scope, receive, send)

        return wrapped

    sub = Starlette(routes=routes())
    client = TestClient(protected(Starlette(routes=[Mount("/v1", app=closure(sub))])))
    refused = client.get("/v1/tenants/globex/items", headers=auth())
    assert refused.status_code == 403
    assert "secret" not in refused.text
    WRITES.clear()
    assert client.post("/v1/tenants/globex/items", headers=auth(), content=b"x").status_code == 403
    assert WRITES == []
    assert client.get("/v1/tenants/acme/items", headers=auth()).json()["tenant"] == "acme"


def test_a_public_path_into_a_mount_whose_routes_cannot_be_seen_stays_public() -> None:
    async def files(scope: Scope, receive: Receive, send: Send) -> None:
        await PlainTextResponse("body { }")(scope, receive, send)

    app = Starlette(routes=[Mount("/static", app=files), *routes()])
    app.add_middleware(
        AuthMiddleware,
        verifier=JWTVerifier(secret=SECRET, issuer=ISSUER, audience=[AUDIENCE]),
        public_paths=["/static/*"],
    )
    client = TestClient(app)
    assert client.get("/static/site.css").text == "body { }"
    assert client.get("/tenants/acme/items").status_code == 401


class _Ping:
    """Serves /_ping itself, through a router of its own, and passes the rest on."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.router = Router(routes=[Route("/_ping", items)])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].endswith("/_ping"):
            await self.router(scope, receive, send)
            return
        await self.app(scope, receive, send)


class _Labels:
    """Passes everything on, keeping a list of path templates named `routes`."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.routes = ["/tenants/{tenant_id}/items"]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


@pytest.mark.parametrize("wrapper", [_Ping, _Labels])
def test_a_mount_behind_a_wrapper_with_routes_of_its_own_is_not_taken_at_its_word(
    wrapper: Any,
) -> None:
    # The route walker stopped at the wrapper's router or routes list: the sub-app's
    # tenant routes were never seen, bound or checked (an attacker round read globex).
    api = Starlette(routes=routes())
    client = TestClient(protected(Starlette(routes=[Mount("/api", app=wrapper(api))])))
    refused = client.get("/api/tenants/globex/items", headers=auth())
    assert refused.status_code == 403
    assert "secret" not in refused.text
    assert client.get("/api/tenants/acme/items", headers=auth()).json()["tenant"] == "acme"


def test_a_route_list_given_anew_after_the_first_request_is_checked() -> None:
    app = protected(Starlette(routes=[Route("/old", items)]))
    client = TestClient(app)
    client.get("/old", headers=auth())
    app.router.routes = [route for route in app.router.routes if route.path != "/old"]
    app.router.routes.append(Route("/tenants/{tenant_id}/items", items))
    refused = client.get("/tenants/globex/items", headers=auth())
    assert refused.status_code == 403
    assert "secret" not in refused.text


def test_one_router_mounted_under_two_prefixes_is_checked_under_both() -> None:
    async def data(request: Request) -> Response:
        tenant = request.path_params.get("tenant_id", "-")
        return JSONResponse({"tenant": tenant, "items": ["secret"]})

    shared = Router(routes=[Route("/data", data)])
    client = installed_with_inner_rewrite(
        Mount("/admin-view", app=shared), Mount("/t/{tenant_id}", app=shared)
    )
    refused = client.get("/t/globex/data/", headers=auth())  # the rewrite: a missed prediction
    assert refused.status_code == 403
    assert "secret" not in refused.text
    assert client.get("/t/acme/data/", headers=auth()).json()["tenant"] == "acme"


API_KEY = "k-" + "x" * 40


def key_settings(api_key_paths: list[str], **values: Any) -> HardenSettings:
    """Tokens as everywhere here, and one API key (``API_KEY``) on ``api_key_paths``."""
    return HardenSettings(
        jwt_secret=SECRET,
        jwt_issuer=ISSUER,
        jwt_audience=AUDIENCE,
        api_keys=f"ops:{hash_api_key(API_KEY)}",
        api_key_paths=api_key_paths,
        **values,
    )


class _Lowercase:
    """A middleware inside the stack that routes any case (a case-insensitive app)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope = {**scope, "path": scope["path"].lower()}
        await self.app(scope, receive, send)


def test_key_paths_and_webhook_paths_hold_in_any_case() -> None:
    # /Internal/export was judged a JWT route and /WEBHOOKS/pay an unsigned one; the
    # router then served /internal/export and /webhooks/pay (an attacker round).
    ran: list[str] = []

    async def export(request: Request) -> Response:
        ran.append("export")
        return JSONResponse({"all_tenants": ["acme", "globex"]})

    async def pay(request: Request) -> Response:
        ran.append("pay")
        return JSONResponse({"paid": True})

    app = Starlette(
        routes=[Route("/internal/export", export), Route("/webhooks/pay", pay, methods=["POST"])]
    )
    app.add_middleware(_Lowercase)
    install(
        app,
        key_settings(
            ["/internal/*"], webhook_secret="whsec_" + "A" * 43, webhook_paths=["/webhooks/*"]
        ),
    )
    client = TestClient(app)
    assert client.get("/Internal/export", headers=auth()).status_code == 401
    assert client.post("/WEBHOOKS/pay", headers=auth(), content=b"{}").status_code == 400
    assert ran == []


def test_the_route_reached_gets_the_credential_kind_it_asks_for() -> None:
    # API-key paths are chosen on the path as sent: the trailing-slash rewrite reached
    # the API-key route /internal/export with a tenant's token (an attacker round).
    ran: list[str] = []

    async def export(request: Request) -> Response:
        ran.append(request.state.principal.credential)
        return JSONResponse({"all_tenants": True})

    app = Starlette(routes=[Route("/internal/export", export)])
    app.add_middleware(StripTrailingSlash)
    install(app, key_settings(["/internal/export"]))
    client = TestClient(app)
    assert client.get("/internal/export/", headers=auth()).status_code == 401
    assert ran == []
    assert client.get("/internal/export", headers={"X-API-Key": API_KEY}).status_code == 200
    assert ran == ["api_key"]


def test_the_endpoint_check_holds_under_a_root_path() -> None:
    # uvicorn --root-path /svc: public paths and the endpoint's path are judged below
    # the root path, as the settings are written.
    @public()
    async def spa(request: Request) -> Response:
        return JSONResponse({"page": "index"})

    app = Starlette(routes=[*routes(), Route("/{rest:path}", spa)])
    app.add_middleware(StripTrailingSlash)
    install(app, HardenSettings(jwt_secret=SECRET, jwt_issuer=ISSUER, jwt_audience=AUDIENCE))
    client = TestClient(app, root_path="/svc")
    assert client.get("/svc/tenants/globex/items/").status_code == 401
    assert client.get("/svc/tenants/globex/items/", headers=auth()).status_code == 403
    assert client.get("/svc/tenants/acme/items/", headers=auth()).json()["tenant"] == "acme"
    assert client.get("/svc/about").json() == {"page": "index"}


class _ResolveDots:
    """A middleware inside the stack that resolves dot segments, as some routers do."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope = {**scope, "path": posixpath.normpath(scope["path"])}
        await self.app(scope, receive, send)


def test_a_webhook_reached_through_a_dot_segment_is_still_verified() -> None:
    # /docs/%2e%2e/webhooks/pay is public by /docs* and no webhook path as sent; the inner
    # normalizer then routes it to the webhook handler (an attacker round's shape).
    ran: list[str] = []

    async def pay(request: Request) -> Response:
        ran.append("pay")
        return JSONResponse({"paid": True})

    @public()
    async def docs(request: Request) -> Response:
        return JSONResponse({"docs": True})

    app = Starlette(routes=[Route("/webhooks/pay", pay, methods=["POST"]), Route("/docs", docs)])
    app.add_middleware(_ResolveDots)
    install(
        app,
        key_settings(
            [],
            public_paths=["/docs*", "/webhooks/*"],
            webhook_secret="whsec_" + "A" * 43,
            webhook_paths=["/webhooks/*"],
        ),
    )
    client = TestClient(app)
    for path in ("/docs/%2e%2e/webhooks/pay", "/docs/./%2e%2e/webhooks//pay/"):
        response = client.post(path, content=b'{"amount": 1}')
        assert response.status_code == 400, path
        assert response.json()["code"] == "SIGNATURE_INVALID"
    assert ran == []


def test_the_login_limit_counts_a_login_reached_through_a_dot_segment() -> None:
    logins: list[str] = []

    @public()
    async def login(request: Request) -> Response:
        logins.append("tried")
        return JSONResponse({"token": "..."})

    app = Starlette(routes=[Route("/auth/token", login, methods=["POST"])])
    app.add_middleware(_ResolveDots)
    install(
        app,
        key_settings([], public_paths=["/docs*", "/auth/*"], rate_limit_auth="2/minute"),
    )
    client = TestClient(app)
    statuses = [client.post("/docs/%2e%2e/auth/token").status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    assert client.post("/auth/token").status_code == 429  # one budget, however spelled
    assert len(logins) == 2


def test_a_request_authenticated_at_the_endpoint_is_charged_by_the_tenant_limit() -> None:
    # The @public catch-all took it, the inner rewrite reached a protected route, and
    # the endpoint authenticated it: the per-tenant limit, which ran before with no
    # principal, counts it there.
    @public()
    async def spa(request: Request) -> Response:
        return JSONResponse({"page": "index"})

    app = Starlette(routes=[*routes(), Route("/{rest:path}", spa)])
    app.add_middleware(StripTrailingSlash)
    install(
        app,
        HardenSettings(
            jwt_secret=SECRET,
            jwt_issuer=ISSUER,
            jwt_audience=AUDIENCE,
            rate_limit_tenant="2/minute",
        ),
    )
    client = TestClient(app)
    served = [client.get("/tenants/acme/items/", headers=auth()) for _ in range(2)]
    assert [response.status_code for response in served] == [200, 200]
    assert "r=0" in served[1].headers["ratelimit"]  # the tenant rule is reported too
    refused = client.get("/tenants/acme/items/", headers=auth())
    assert refused.status_code == 429
    assert refused.json()["code"] == "RATE_LIMITED"
    assert "secret" not in refused.text
    # The same tenant's budget, whichever way it came in.
    assert client.get("/tenants/acme/items", headers=auth()).status_code == 429
    assert client.get("/about").status_code == 200  # public: no tenant to charge


def test_a_request_authenticated_in_a_mount_is_bound_by_the_apps_own_path() -> None:
    # Authenticated at an endpoint inside Mount("/m"), the request's tenant is found
    # from the app's path (/m/tenants/acme/items), not the mount's (/tenants/acme/items,
    # which the app's own /{tenant_id}/... route would read as tenant "tenants").
    @public()
    async def spa(request: Request) -> Response:
        return JSONResponse({"page": "index"})

    async def page(request: Request) -> Response:
        return JSONResponse({"tenant": request.path_params["tenant_id"]})

    app = Starlette(
        routes=[
            Mount("/m", routes=routes()),
            Route("/{tenant_id}/{section}/{name}", page),
            Route("/{rest:path}", spa),
        ]
    )
    app.add_middleware(StripTrailingSlash)
    install(app, HardenSettings(jwt_secret=SECRET, jwt_issuer=ISSUER, jwt_audience=AUDIENCE))
    client = TestClient(app)
    served = client.get("/m/tenants/acme/items/", headers=auth())
    assert served.status_code == 200
    assert served.json()["tenant"] == "acme"
    refused = client.get("/m/tenants/globex/items/", headers=auth())
    assert refused.status_code == 403
    assert "secret" not in refused.text


def test_an_included_router_rebuilt_after_traffic_is_guarded_again(tmp_path: Any) -> None:
    # FastAPI rebuilds an included router's routes (fresh, unwrapped apps) whenever its
    # routes version moves, as APIRouter.frontend() does without growing any route list.
    from fastapi import APIRouter

    router = APIRouter()

    @router.get("/tenants/{tenant_id}/items")
    async def tenant_items(tenant_id: str) -> dict[str, Any]:
        return {"tenant": tenant_id, "items": ["secret"]}

    app = FastAPI()
    app.include_router(router)
    app.add_middleware(StripTrailingSlash)
    install(app, HardenSettings(jwt_secret=SECRET, jwt_issuer=ISSUER, jwt_audience=AUDIENCE))
    client = TestClient(app)
    assert client.get("/tenants/globex/items/", headers=auth()).status_code == 403
    (tmp_path / "index.html").write_text("<p>ui</p>")
    router.frontend("/ui", directory=tmp_path)
    refused = client.get("/tenants/globex/items/", headers=auth())
    assert refused.status_code == 403
    assert "secret" not in refused.text
    assert client.get("/tenants/acme/items/", headers=auth()).json()["tenant"] == "acme"


class _AnyCaseRoute(Route):
    """A route that matches any case the usual way: its regex with ``re.IGNORECASE``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.path_regex = re.compile(self.path_regex.pattern, re.IGNORECASE)


def test_a_router_matching_with_ignorecase_serves_no_check_less_spelling() -> None:
    # re.IGNORECASE matches "i" to the dotless i and the dotted capital I, which
    # casefold() keeps apart: an attacker round's /webhooks/g\u0131thub ran unsigned, and
    # /auth/log\u0131n was never charged by the login limit. No rewrite: nothing was said.
    ran: list[str] = []

    async def github(request: Request) -> Response:
        ran.append("github")
        return JSONResponse({"processed": True})

    async def stats(request: Request) -> Response:
        return JSONResponse({"credential": request.state.principal.credential})

    app = Starlette(
        routes=[
            _AnyCaseRoute("/webhooks/github", github, methods=["POST"]),
            _AnyCaseRoute("/auth/login", refused_login, methods=["POST"]),
            _AnyCaseRoute("/internal/stats", stats),
        ]
    )
    install(
        app,
        key_settings(
            ["/internal/*"],
            public_paths=["/webhooks/*", "/auth/*"],
            webhook_secret="whsec_" + "A" * 43,
            webhook_paths=["/webhooks/github"],
            auth_paths=["/auth/login"],
            rate_limit_auth="3/minute",
        ),
    )
    client = TestClient(app)
    for path in ("/webhooks/g\u0131thub", "/webhooks/g\u0130thub"):
        assert client.post(path, content=b"{}").status_code == 400, path
    assert ran == []
    logins = [client.post(path).status_code for path in ("/auth/log\u0131n", "/auth/login") * 2]
    assert logins == [401, 401, 401, 429]
    assert client.get("/\u0131nternal/stats", headers=auth()).status_code == 401


def _status_of(app: Any, method: str, path: str, *, root_path: str = "") -> int:
    """The status ``app`` answers for ``path`` exactly as uvicorn would put it in the scope
    (decoded once; the test client decodes twice and resolves dot segments)."""
    full = root_path + path
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": full,
        "raw_path": full.encode(),
        "root_path": root_path,
        "query_string": b"",
        "headers": [(b"host", b"testserver"), (b"content-length", b"2")],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    anyio.run(app, scope, receive, send)
    return int(sent[0]["status"])


def test_a_normalizer_on_the_full_path_cannot_climb_over_the_root_path() -> None:
    # uvicorn --root-path /svc and a middleware that normalizes scope["path"], root path
    # included: /webhooks/../../svc/webhooks/pay climbs over /svc and back in.
    ran: list[str] = []

    async def pay(request: Request) -> Response:
        ran.append("pay")
        return JSONResponse({"paid": True})

    app = Starlette(routes=[Route("/webhooks/pay", pay, methods=["POST"])])
    app.add_middleware(_ResolveDots)
    install(
        app,
        key_settings(
            [],
            public_paths=["/webhooks/*"],
            webhook_secret="whsec_" + "A" * 43,
            webhook_paths=["/webhooks/pay"],
        ),
    )
    path = "/webhooks/../../svc/webhooks/pay"
    assert _status_of(app, "POST", path, root_path="/svc") == 400
    assert ran == []


class _DecodeAgain:
    """A middleware inside the stack that percent-decodes the (already decoded) path."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope = {**scope, "path": posixpath.normpath(unquote(scope["path"]))}
        await self.app(scope, receive, send)


def test_a_path_decoded_again_inside_the_stack_keeps_its_checks() -> None:
    ran: list[str] = []
    app = _paying_app(ran, _DecodeAgain)
    # As uvicorn puts them in the scope: decoded once.
    assert _status_of(app, "POST", "/webhooks/%70ay") == 400
    assert ran == []
    logins = [_status_of(app, "POST", "/webhooks/%2e%2e/auth/token") for _ in range(3)]
    assert logins == [401, 401, 429]


class _StripVersion:
    """A middleware inside the stack that serves /api/v1/... as /... (a rewrite no
    spelling of the path foresees)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/api/v1/"):
            scope = {**scope, "path": scope["path"][len("/api/v1") :]}
        await self.app(scope, receive, send)


def _paying_app(
    ran: list[str], rewrite: type[Any], *, catch_all: bool = False, api_key_paths: Any = ()
) -> Starlette:
    """A webhook route, a login route under a limit of 2, and ``rewrite`` inside the stack
    (added before install()); with a ``@public`` catch-all taking any other path."""

    async def pay(request: Request) -> Response:
        ran.append("pay")
        return JSONResponse({"paid": True})

    @public()
    async def spa(request: Request) -> Response:
        return JSONResponse({"page": "index"})

    routes = [
        Route("/webhooks/pay", pay, methods=["POST"]),
        Route("/auth/token", refused_login, methods=["POST"]),
    ]
    if catch_all:
        routes.append(Route("/{rest:path}", spa, methods=["GET", "POST"]))
    app = Starlette(routes=routes)
    app.add_middleware(rewrite)
    install(
        app,
        key_settings(
            list(api_key_paths),
            public_paths=["/webhooks/*", "/auth/*"],
            webhook_secret="whsec_" + "A" * 43,
            webhook_paths=["/webhooks/pay"],
            rate_limit_auth="2/minute",
        ),
    )
    return app


def test_a_webhook_path_reached_through_any_rewrite_is_verified_at_the_endpoint() -> None:
    # /api/v1/webhooks/pay is no webhook path as sent, and the @public catch-all takes it;
    # the inner rewrite serves /webhooks/pay. The endpoint asks the webhook layer again.
    ran: list[str] = []
    client = TestClient(_paying_app(ran, _StripVersion, catch_all=True))
    with capture_logs() as logs:
        unsigned = client.post("/api/v1/webhooks/pay", content=b"{}")
    assert unsigned.status_code == 400
    assert unsigned.json()["code"] == "SIGNATURE_INVALID"
    assert ran == []
    events = [log["event"] for log in logs]
    assert "path_rewritten_inside_the_stack" in events
    assert "webhook_verified_at_the_endpoint" in events
    body = b'{"amount": 1}'
    headers = sign_webhook(body, "whsec_" + "A" * 43, webhook_id="msg_v1")
    assert client.post("/api/v1/webhooks/pay", content=body, headers=headers).json() == {
        "paid": True
    }
    again = client.post("/api/v1/webhooks/pay", content=body, headers=headers)
    assert again.json()["status"] == "duplicate"  # processed once, however it came in
    assert ran == ["pay"]


def test_the_login_limit_counts_a_login_reached_through_any_rewrite() -> None:
    client = TestClient(_paying_app([], _StripVersion, catch_all=True))
    statuses = [client.post("/api/v1/auth/token").status_code for _ in range(3)]
    assert statuses == [401, 401, 429]
    refused = client.post("/api/v1/auth/token")
    assert refused.json()["code"] == "RATE_LIMITED"
    assert '"auth"' in refused.headers["ratelimit"]
    assert client.post("/auth/token").status_code == 429  # one budget
    assert client.get("/api/v1/about").json() == {"page": "index"}  # nothing else changes


class _RootAtApi:
    """A middleware inside the stack that mounts the app at /api the ASGI way: it sets
    the root path and leaves the path, so the router serves /x for /api/x."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/api/"):
            scope = {**scope, "root_path": "/api"}
        await self.app(scope, receive, send)


def test_a_root_path_changed_inside_the_stack_is_a_rewrite_too() -> None:
    # An attacker round: only scope["path"] was compared, so every check judged
    # /api/... while the router served /...: a tenant's JWT read the API-key route, an
    # unsigned delivery was processed, the login limit never counted.
    ran: list[str] = []

    async def export(request: Request) -> Response:
        ran.append("export")
        return JSONResponse({"all_tenants": True})

    app = _paying_app(ran, _RootAtApi, catch_all=True, api_key_paths=["/internal/*"])
    app.router.routes.insert(0, Route("/internal/export", export))
    app.router.routes.insert(0, Route("/tenants/{tenant_id}/items", items))
    client = TestClient(app)
    assert client.get("/api/internal/export", headers=auth()).status_code == 401
    assert client.post("/api/webhooks/pay", content=b"{}").status_code == 400
    assert [client.post("/api/auth/token").status_code for _ in range(3)] == [401, 401, 429]
    assert client.get("/api/tenants/globex/items", headers=auth()).status_code == 403
    assert client.get("/api/tenants/acme/items", headers=auth()).json()["tenant"] == "acme"
    assert ran == []


def test_a_mounted_route_is_no_rewrite_and_its_checks_are_not_repeated() -> None:
    # Mount("/m") adds to the root path below auth: explained by the route table, so
    # nothing is judged again (the login limit counts once per request, not twice).
    login = Route("/auth/token", refused_login, methods=["POST"])
    app = Starlette(routes=[Mount("/m", routes=[login])])
    install(
        app,
        key_settings(
            [], public_paths=["/m/auth/*"], auth_paths=["/m/auth/*"], rate_limit_auth="3/minute"
        ),
    )
    client = TestClient(app)
    with capture_logs() as logs:
        statuses = [client.post("/m/auth/token").status_code for _ in range(4)]
    assert statuses == [401, 401, 401, 429]
    assert "path_rewritten_inside_the_stack" not in [log["event"] for log in logs]


def test_layers_below_the_rewrite_are_not_asked_again() -> None:
    # An attacker round: the app's own limit and webhook layer, added inside its
    # rewriter, judged the path served already; asked again at the endpoint, the limit
    # counted twice (429 at half the budget) and the delivery met its own claim (409).
    from hardenkit import RateLimitMiddleware, RateLimitRule, WebhookMiddleware, WebhookVerifier
    from hardenkit.signing._secret import encode_standard_secret

    stripe_secret = encode_standard_secret(b"s" * 32)
    ran: list[str] = []

    async def export(request: Request) -> Response:
        ran.append("export")
        return JSONResponse({"rows": 1})

    async def stripe(request: Request) -> Response:
        ran.append("stripe")
        return JSONResponse({"ok": True})

    app = Starlette(
        routes=[Route("/export", export), Route("/webhooks/stripe", stripe, methods=["POST"])]
    )
    app.add_middleware(
        RateLimitMiddleware, rules=[RateLimitRule("export", "4/minute", paths=["/export"])]
    )
    app.add_middleware(
        WebhookMiddleware, verifier=WebhookVerifier(stripe_secret), paths=["/webhooks/stripe"]
    )
    app.add_middleware(_StripVersion)
    install(app, key_settings([], public_paths=["/api/v1/*", "/webhooks/*"]))
    client = TestClient(app)
    statuses = [client.get("/api/v1/export", headers=auth()).status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 200, 429]
    body = b'{"id": 1}'
    signed = sign_webhook(body, stripe_secret, webhook_id="evt_1")
    assert client.post("/api/v1/webhooks/stripe", content=body, headers=signed).status_code == 200
    assert ran.count("stripe") == 1


class _NoAppAttribute:
    """A middleware outside install()'s layers that keeps its app under another name."""

    def __init__(self, app: Any) -> None:
        self._inner = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._inner(scope, receive, send)


def test_an_outer_middleware_of_any_shape_keeps_the_checks_at_the_endpoint() -> None:
    # An attacker round: the layers were found by walking each middleware's .app from
    # the top; one without it hid them all. Each layer now notes the path it judged.
    ran: list[str] = []
    app = _paying_app(ran, _StripVersion, catch_all=True)
    app.add_middleware(_NoAppAttribute)
    client = TestClient(app)
    assert client.post("/api/v1/webhooks/pay", content=b"{}").status_code == 400
    assert [client.post("/api/v1/auth/token").status_code for _ in range(3)] == [401, 401, 429]
    assert ran == []


def test_a_sub_app_with_its_own_install_does_not_hide_a_rewrite_outside_it() -> None:
    # An attacker round: the sub-app's auth replaced the outer verdict, and its layers
    # judged the path after the outer rewrite: the outer checks were never asked again.
    ran: list[str] = []

    async def pay(request: Request) -> Response:
        ran.append("pay")
        return JSONResponse({"paid": True})

    async def export(request: Request) -> Response:
        ran.append("export")
        return JSONResponse({"all_tenants": True})

    @public()
    async def spa(request: Request) -> Response:
        return JSONResponse({"page": "index"})

    billing = Starlette(
        routes=[
            Route("/webhooks/pay", pay, methods=["POST"]),
            Route("/auth/token", refused_login, methods=["POST"]),
            Route("/internal/export", export),
        ]
    )
    install(billing, key_settings([], public_paths=["/webhooks/*", "/auth/*"]))
    app = Starlette(
        routes=[Mount("/billing", app=billing), Route("/{rest:path}", spa, methods=["GET", "POST"])]
    )
    app.add_middleware(_StripVersion)
    install(
        app,
        key_settings(
            ["/billing/internal/*"],
            public_paths=["/billing/webhooks/*", "/billing/auth/*"],
            webhook_secret="whsec_" + "A" * 43,
            webhook_paths=["/billing/webhooks/pay"],
            auth_paths=["/billing/auth/*"],
            rate_limit_auth="2/minute",
        ),
    )
    client = TestClient(app)
    assert client.post("/api/v1/billing/webhooks/pay", content=b"{}").status_code == 400
    logins = [client.post("/api/v1/billing/auth/token").status_code for _ in range(3)]
    assert logins == [401, 401, 429]
    assert client.get("/api/v1/billing/internal/export", headers=auth()).status_code == 401
    assert ran == []


def test_a_sub_apps_own_rewrite_is_not_judged_by_the_outer_apps_rules() -> None:
    # An attacker round: the outer layers were asked again with the sub-app's path in
    # the outer app's terms: a partner delivery checked against the outer secret (401,
    # then "duplicate": lost), and partner logins spent the outer login budget.
    ran: list[str] = []
    partner_secret = "whsec_" + "P" * 43

    async def hook(request: Request) -> Response:
        ran.append("partner-hook")
        return JSONResponse({"ok": True})

    partner = Starlette(
        routes=[
            Route("/webhooks/github", hook, methods=["POST"]),
            Route("/auth/token", refused_login, methods=["POST"]),
        ]
    )
    partner.add_middleware(StripTrailingSlash)
    install(
        partner,
        key_settings(
            [],
            public_paths=["/webhooks/*", "/auth/*"],
            webhook_secret=partner_secret,
            webhook_paths=["/webhooks/*"],
        ),
    )
    app = Starlette(
        routes=[
            Mount("/partner", app=partner),
            Route("/auth/token", refused_login, methods=["POST"]),
        ]
    )
    install(
        app,
        key_settings(
            [],
            public_paths=["/partner/*", "/webhooks/*", "/auth/*"],
            webhook_secret="whsec_" + "A" * 43,
            webhook_paths=["/webhooks/*"],
            rate_limit_auth="2/minute",
        ),
    )
    client = TestClient(app)
    body = b'{"id": 1}'
    signed = sign_webhook(body, partner_secret, webhook_id="d1")
    assert client.post("/partner/webhooks/github/", content=body, headers=signed).json() == {
        "ok": True
    }
    assert ran == ["partner-hook"]
    assert [client.post("/partner/auth/token/").status_code for _ in range(2)] == [401, 401]
    assert client.post("/auth/token").status_code == 401  # the outer budget is untouched


class _RebuildScope:
    """A middleware inside the stack that rebuilds the scope from the ASGI keys only
    (dropping every extension key) and strips a version prefix."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            keys = ("type", "asgi", "http_version", "method", "scheme", "path", "raw_path")
            rebuilt = {key: scope[key] for key in keys if key in scope}
            rebuilt.update(
                root_path=scope.get("root_path", ""),
                query_string=scope.get("query_string", b""),
                headers=scope["headers"],
                client=scope.get("client"),
                server=scope.get("server"),
                app=scope.get("app"),
            )
            if rebuilt["path"].startswith("/api/v1/"):
                rebuilt["path"] = rebuilt["path"][len("/api/v1") :]
            scope = rebuilt
        await self.app(scope, receive, send)


def test_a_middleware_that_rebuilds_the_scope_cannot_drop_the_checks() -> None:
    # An attacker round: with the verdict and the layers' notes in the scope only, a
    # rebuilt scope reached the endpoint with nothing to hold it to: an unsigned delivery
    # was processed, a protected route served without a credential, logins unlimited.
    ran: list[str] = []
    app = _paying_app(ran, _RebuildScope, catch_all=True, api_key_paths=["/internal/*"])

    async def export(request: Request) -> Response:
        ran.append("export")
        return JSONResponse({"all_tenants": True})

    app.router.routes.insert(0, Route("/internal/export", export))
    client = TestClient(app)
    assert client.post("/api/v1/webhooks/pay", content=b"{}").status_code == 400
    assert client.get("/api/v1/internal/export").status_code == 401
    assert [client.post("/api/v1/auth/token").status_code for _ in range(3)] == [401, 401, 429]
    assert ran == []
