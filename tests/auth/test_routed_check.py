"""The tenant in the path the router actually gave is checked, not only the predicted one.

Binding finds a request's path parameters before routing, by predicting the route the
router will pick (``hardenkit._routes.serving_route``). When the prediction misses (a
router that routes otherwise, a FastAPI release that selects otherwise), the routed
parameters are still checked at the handler's first ``receive`` or ``send``: a 403, never
another tenant's data.
"""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route, Router, WebSocketRoute
from starlette.testclient import TestClient, WebSocketDenialResponse
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from structlog.testing import capture_logs

from hardenkit import AuthMiddleware, JWTVerifier
from hardenkit.auth import _binding
from hardenkit.errors import ErrorMiddleware
from tests.auth.support import AUDIENCE, ISSUER, SECRET, hs256

WRITES: list[str] = []


async def items(request: Request) -> Response:
    return JSONResponse({"tenant": request.path_params["tenant_id"], "items": ["secret"]})


async def create_item(request: Request) -> Response:
    body = await request.body()
    WRITES.append(f"{request.path_params['tenant_id']}:{body.decode()}")
    return JSONResponse({"created": True}, status_code=201)


async def feed(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_json({"tenant": websocket.path_params["tenant_id"]})
    await websocket.close()


ROUTES = [
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


def protected(app: Starlette) -> Starlette:
    app.add_middleware(
        AuthMiddleware, verifier=JWTVerifier(secret=SECRET, issuer=ISSUER, audience=[AUDIENCE])
    )
    app.add_middleware(ErrorMiddleware)
    return app


def versioned_app() -> Starlette:
    app = Starlette()
    app.router = VersionedRouter(routes=ROUTES)
    return protected(app)


@pytest.fixture
def prediction_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every route prediction misses, as a FastAPI release that routes otherwise would."""
    monkeypatch.setattr(_binding, "route_path_params", lambda scope: None)


AUTH = {"Authorization": f"Bearer {hs256()}"}  # a token of tenant acme


def test_a_router_the_prediction_does_not_know_is_refused_another_tenants_data() -> None:
    client = TestClient(versioned_app())
    with capture_logs() as logs:
        response = client.get("/v2/tenants/globex/items", headers=AUTH)
    assert response.status_code == 403
    assert response.json()["code"] == "TENANT_MISMATCH"
    assert "secret" not in response.text
    assert [log["event"] for log in logs if log["log_level"] == "error"] == [
        "tenant_binding_missed_the_route"
    ]
    # The caller's own tenant, through the same router, is served.
    own = client.get("/v2/tenants/acme/items", headers=AUTH)
    assert own.status_code == 200
    assert own.json()["tenant"] == "acme"


@pytest.mark.usefixtures("prediction_missing")
def test_a_missed_prediction_stops_a_write_before_the_handler_reads_its_body() -> None:
    WRITES.clear()
    client = TestClient(protected(Starlette(routes=ROUTES)))
    response = client.post("/tenants/globex/items", headers=AUTH, content=b"x")
    assert response.status_code == 403
    assert response.json()["code"] == "TENANT_MISMATCH"
    assert WRITES == []  # the handler's first receive raised: nothing written
    assert client.post("/tenants/acme/items", headers=AUTH, content=b"y").status_code == 201
    assert WRITES == ["acme:y"]


@pytest.mark.usefixtures("prediction_missing")
def test_a_handler_that_swallows_the_refusal_still_answers_403() -> None:
    async def stubborn(request: Request) -> Response:
        with contextlib.suppress(Exception):  # what a careless handler does
            await request.body()
        return JSONResponse({"items": ["secret"]})

    app = protected(Starlette(routes=[Route("/tenants/{tenant_id}/x", stubborn, methods=["POST"])]))
    response = TestClient(app).post("/tenants/globex/x", headers=AUTH, content=b"z")
    assert response.status_code == 403
    assert "secret" not in response.text


@pytest.mark.usefixtures("prediction_missing")
def test_a_missed_prediction_never_opens_a_websocket_of_another_tenant() -> None:
    client = TestClient(protected(Starlette(routes=ROUTES)))
    with (
        pytest.raises(WebSocketDenialResponse) as denied,
        client.websocket_connect("/tenants/globex/feed", headers=AUTH),
    ):
        pass
    assert denied.value.status_code == 403
    with client.websocket_connect("/tenants/acme/feed", headers=AUTH) as websocket:
        assert websocket.receive_json() == {"tenant": "acme"}


def test_a_predicted_route_is_refused_before_the_handler_and_logs_no_miss() -> None:
    # The common case: the prediction and the router agree; the check after routing
    # finds nothing more to say.
    WRITES.clear()
    client = TestClient(protected(Starlette(routes=ROUTES)))
    with capture_logs() as logs:
        response = client.post("/tenants/globex/items", headers=AUTH, content=b"x")
        own = client.get("/tenants/acme/items", headers=AUTH)
    assert response.status_code == 403
    assert own.status_code == 200
    assert WRITES == []
    assert not [log for log in logs if log["event"] == "tenant_binding_missed_the_route"]


def test_an_app_without_tenant_parameters_is_served_as_it_was(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # No route has a bound parameter: nothing is predicted, nothing is checked after.
    async def me(request: Request) -> Response:
        return JSONResponse({"me": True})

    seen: list[Any] = []
    original = _binding.TenantBinding.routed_mismatch
    monkeypatch.setattr(
        _binding.TenantBinding,
        "routed_mismatch",
        lambda self, scope, principal: seen.append(scope) or original(self, scope, principal),
    )
    app = protected(Starlette(routes=[Route("/me", me)]))
    assert TestClient(app).get("/me", headers=AUTH).status_code == 200
    assert seen == []


def test_a_tenant_an_outer_mount_routed_is_bound_though_the_app_names_none() -> None:
    # install() ran on a sub-app whose routes name no tenant; the app around it mounts it
    # under /tenants/{tenant_id}: the outer router set the tenant before this app's
    # AuthMiddleware ran (an attacker round read globex's items with acme's token).
    async def own_items(request: Request) -> Response:
        return JSONResponse({"tenant": request.path_params["tenant_id"], "items": ["secret"]})

    api = protected(Starlette(routes=[Route("/items", own_items)]))
    outer = Starlette(routes=[Mount("/tenants/{tenant_id}", app=api)])
    client = TestClient(outer)
    refused = client.get("/tenants/globex/items", headers=AUTH)
    assert refused.status_code == 403
    assert refused.json()["code"] == "TENANT_MISMATCH"
    assert "secret" not in refused.text
    assert client.get("/tenants/acme/items", headers=AUTH).json()["tenant"] == "acme"
