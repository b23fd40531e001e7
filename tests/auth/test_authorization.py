"""require_roles / require_scopes and APIKeyGuard, on Starlette and FastAPI routes."""

from __future__ import annotations

from typing import Annotated

import pytest
from fastapi import Depends, FastAPI
from starlette.applications import Starlette
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient
from structlog.testing import capture_logs

from hardenkit import (
    APIKeyGuard,
    HardenSettings,
    Principal,
    install,
    require_roles,
    require_scopes,
)
from hardenkit.auth import TokenRejectedError, hash_api_key
from hardenkit.errors import ConfigurationError, HardenError, error_response
from tests.auth.support import AUDIENCE, ISSUER, SECRET, claims, hs256

SETTINGS = HardenSettings(jwt_secret=SECRET, jwt_issuer=ISSUER, jwt_audience=[AUDIENCE])
API_KEY = "svc-key-" + "x" * 40
GUARD = APIKeyGuard([f"billing:{hash_api_key(API_KEY)}", f"other:{hash_api_key('y' * 40)}"])


@require_roles("admin")
async def admin_only(request: Request) -> Response:
    return PlainTextResponse("admin")


@require_roles("admin", "auditor", any_of=True)
def either_role(request: Request) -> Response:  # sync endpoints are wrapped too
    return PlainTextResponse("either")


@require_scopes("orders:write")
async def write_orders(request: Request) -> Response:
    return PlainTextResponse("written")


@GUARD
async def service(request: Request) -> Response:
    return JSONResponse({"subject": request.state.principal.subject})


def starlette_client() -> TestClient:
    app = Starlette(
        routes=[
            Route("/admin", admin_only),
            Route("/either", either_role),
            Route("/orders", write_orders),
            Route("/service", service),
        ]
    )
    install(app, SETTINGS.model_copy(update={"public_paths": ["/service"]}))
    return TestClient(app)


def bearer(**overrides: object) -> dict[str, str]:
    return {"Authorization": f"Bearer {hs256(claims(**overrides))}"}


def test_a_role_decorated_route_admits_the_role_and_refuses_others() -> None:
    client = starlette_client()
    assert client.get("/admin", headers=bearer(roles=["admin"])).text == "admin"
    refused = client.get("/admin", headers=bearer(roles=["member"]))
    assert refused.status_code == 403
    assert refused.json()["code"] == "AUTHORIZATION_ERROR"


def test_any_of_accepts_one_of_the_roles_on_a_sync_endpoint() -> None:
    client = starlette_client()
    assert client.get("/either", headers=bearer(roles=["auditor"])).text == "either"
    assert client.get("/either", headers=bearer(roles=["member"])).status_code == 403


def test_a_missing_scope_is_403_with_insufficient_scope_challenge() -> None:
    client = starlette_client()
    refused = client.get("/orders", headers=bearer(scope="orders:read"))
    assert refused.status_code == 403
    assert 'error="insufficient_scope"' in refused.headers["www-authenticate"]
    assert client.get("/orders", headers=bearer(scope="orders:read orders:write")).status_code == (
        200
    )


def test_the_api_key_guard_decorates_a_route() -> None:
    client = starlette_client()
    assert client.get("/service", headers={"X-API-Key": API_KEY}).json() == {"subject": "billing"}
    refused = client.get("/service", headers={"X-API-Key": API_KEY + "x"})
    assert refused.status_code == 401
    assert refused.json()["code"] == "AUTHENTICATION_ERROR"
    assert API_KEY not in refused.text
    assert client.get("/service").status_code == 401


def test_requirements_work_as_fastapi_dependencies() -> None:
    app = FastAPI()

    @app.get("/admin")
    async def admin(principal: Annotated[Principal, Depends(require_roles("admin"))]) -> dict:  # type: ignore[type-arg]
        return {"subject": principal.subject}

    @app.get("/service")
    async def svc(principal: Annotated[Principal, Depends(GUARD)]) -> dict:  # type: ignore[type-arg]
        return {"subject": principal.subject}

    install(app, SETTINGS.model_copy(update={"public_paths": ["/service", "/openapi.json"]}))
    client = TestClient(app)
    assert client.get("/admin", headers=bearer(roles=["admin"])).json() == {"subject": "user-1"}
    assert client.get("/admin", headers=bearer(roles=["member"])).status_code == 403
    assert client.get("/service", headers={"X-API-Key": API_KEY}).json() == {"subject": "billing"}
    assert client.get("/service").status_code == 401
    # The dependency does not leak into the API schema as a query parameter.
    assert "parameters" not in client.get("/openapi.json").json()["paths"]["/admin"]["get"]


def test_an_api_key_guard_refuses_everyone_when_empty() -> None:
    with pytest.raises(TokenRejectedError):
        APIKeyGuard([]).authenticate("anything")


def test_an_empty_api_key_guard_is_refused_at_startup_in_production() -> None:
    with pytest.raises(ConfigurationError, match="HARDENKIT_API_KEYS"):
        APIKeyGuard.from_settings(HardenSettings(env="production"))


def test_api_key_entries_must_be_sha256_hex() -> None:
    with pytest.raises(ValueError, match="entry 1"):
        APIKeyGuard(["ops:not-a-hash"])


def test_a_missing_role_or_scope_is_audited_once_with_its_reason_and_what_was_required() -> None:
    client = starlette_client()
    with capture_logs() as logs:
        assert client.get("/admin", headers=bearer(roles=["member"])).status_code == 403
        assert client.get("/orders", headers=bearer(scope="orders:read")).status_code == 403
    audits = [entry for entry in logs if entry.get("audit")]
    assert [(entry["reason"], entry["details"]["required"]) for entry in audits] == [
        ("missing_roles", ["admin"]),
        ("missing_scopes", ["orders:write"]),
    ]
    assert {entry["outcome"] for entry in audits} == {"denied"}
    assert {entry["actor"] for entry in audits} == {"user-1"}


def test_a_requirement_on_a_route_no_credential_reached_audits_its_401() -> None:
    app = Starlette(routes=[Route("/open/admin", admin_only)])
    install(app, SETTINGS.model_copy(update={"public_paths": ["/open/*"]}))
    with capture_logs() as logs:
        refused = TestClient(app).get("/open/admin")
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"] == "Bearer"
    (event,) = [entry for entry in logs if entry.get("audit")]
    assert (event["reason"], event["details"]["status"]) == ("missing", 401)


def test_a_requirement_refusal_is_recorded_where_it_is_sent_not_where_it_is_built() -> None:
    connection = HTTPConnection({"type": "http", "path": "/admin", "headers": [], "state": {}})
    with capture_logs() as logs:
        with pytest.raises(HardenError) as refused:
            require_roles("admin").check(connection)
        assert [entry for entry in logs if entry.get("audit")] == []
        error_response(refused.value, None)
    assert [entry["reason"] for entry in logs if entry.get("audit")] == ["missing"]
