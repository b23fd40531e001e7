"""Every route is inspected for tenant parameters nobody binds: Starlette, Mounts, FastAPI.

Production refuses to start (at ``install()``, at lifespan startup for routes added
later, or with 503 on the first request when no lifespan ran); elsewhere it warns.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Annotated, Any

import httpx
import jwt
import pytest
from fastapi import APIRouter, Body, Cookie, FastAPI, Header, Query
from pydantic import AliasChoices, BaseModel, ConfigDict, Field
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Host, Mount, Route, Router, WebSocketRoute
from starlette.testclient import TestClient
from structlog.testing import capture_logs

from hardenkit import HardenSettings, SettingsError, install
from hardenkit._app_policy import app_problems, is_tenant_name
from hardenkit._routes import iter_routes
from tests.auth.support import AUDIENCE, ISSUER, claims
from tests.support.uvicorn_server import UvicornServer
from tests.test_policy import SAFE


async def ok(request: Request) -> Response:
    return JSONResponse({})


async def ws(websocket: Any) -> None:  # pragma: no cover - never connected
    await websocket.close()


def settings(**values: Any) -> HardenSettings:
    return HardenSettings(**{**SAFE, **values})


def unbound(app: Any, **values: Any) -> list[str]:
    return [
        p.message
        for p in app_problems(settings(**values), app)
        if p.setting == "HARDENKIT_TENANT_PATH_PARAMS"
    ]


@pytest.mark.parametrize(
    "name",
    [
        "tenant",
        "tenant_id",
        "tenantId",
        "TenantID",
        "org",
        "org_id",
        "orgId",
        "organization_id",
        "organisation",
        "workspace",
        "workspaceId",
        "account_id",
        "team",
        "teamId",
        "customer",
        "customer_id",
        "orgs",
        "tenants",
        "tenant_name",
        "tenant__id",
        "x_tenant_id",
        "current_org",
        "tid",
        "tenant-id",  # a FastAPI alias (Query(alias="tenant-id")), as a header would be named
        "org-id",
        "x-tenant-id",
        "tenant_ids",  # several tenants read at once (an attacker round)
        "orgIds",
        "tenantIdentifier",
    ],
)
def test_parameter_names_that_say_tenant_are_recognised(name: str) -> None:
    assert is_tenant_name(name)


@pytest.mark.parametrize("name", ["item_id", "orgchart", "accounting", "teams_count", "user_id"])
def test_other_parameter_names_are_not(name: str) -> None:
    assert not is_tenant_name(name)


def test_starlette_routes_mounts_hosts_and_websockets_are_all_inspected() -> None:
    app = Starlette(
        routes=[
            Route("/orgs/{org_id}/things", ok),
            Mount("/v1", routes=[Mount("/ws/{workspaceId}", routes=[Route("/x", ok)])]),
            Mount("/sub", app=Starlette(routes=[Route("/teams/{team_id}", ok)])),
            Host("api.example.com", app=Router(routes=[Route("/c/{customer_id}", ok)])),
            WebSocketRoute("/live/{account_id}", ws),
            Route("/items/{item_id}", ok),
            Route("/tenants/{tenant_id}/items", ok),
        ]
    )
    paths = {route.path for route in iter_routes(app)}
    assert "/v1/ws/{workspaceId}/x" in paths
    assert "/sub/teams/{team_id}" in paths
    messages = unbound(app)
    for name in ("org_id", "workspaceId", "team_id", "customer_id", "account_id"):
        assert any(repr(name) in message for message in messages), name
    assert not any("item_id" in message or "'tenant_id'" in message for message in messages)


def test_fastapi_routers_included_at_any_depth_are_inspected() -> None:
    teams = APIRouter()

    @teams.get("/{team_id}/members")
    def members(team_id: str) -> dict[str, Any]:
        return {}

    orgs = APIRouter(prefix="/orgs")

    @orgs.get("/{org_id}/things")
    def things(org_id: str) -> dict[str, Any]:
        return {}

    orgs.include_router(teams, prefix="/teams")
    app = FastAPI()
    app.include_router(orgs, prefix="/v1")
    paths = {route.path for route in iter_routes(app)}
    assert {"/v1/orgs/{org_id}/things", "/v1/orgs/teams/{team_id}/members"} <= paths
    assert len(unbound(app)) == 2
    assert unbound(app, tenant_path_params=["org_id"], tenant_unbound_params=["team_id"]) == []


def test_production_refuses_an_unbound_parameter_at_install() -> None:
    app = Starlette(routes=[Route("/orgs/{org_id}/things", ok)])
    with pytest.raises(SettingsError) as refused:
        install(app, settings(env="production"))
    (problem,) = refused.value.problems
    assert problem.setting == "HARDENKIT_TENANT_PATH_PARAMS"
    assert "org_id" in str(problem)
    assert "HARDENKIT_TENANT_UNBOUND_PARAMS" in str(problem)


def test_binding_or_declaring_the_parameter_lets_production_start() -> None:
    for values in ({"tenant_path_params": ["org_id"]}, {"tenant_unbound_params": ["org_id"]}):
        app = Starlette(routes=[Route("/orgs/{org_id}/things", ok)])
        install(app, settings(env="production", **values))
        with TestClient(app):
            pass


def test_a_route_added_after_install_is_refused_at_lifespan_startup() -> None:
    app = FastAPI()
    install(app, settings(env="production"))

    @app.get("/orgs/{org_id}/things")
    def things(org_id: str) -> dict[str, Any]:
        return {}

    with pytest.raises(SettingsError, match="org_id"), TestClient(app):
        pass


def test_a_refusal_is_not_swallowed_by_the_apps_own_lifespan_and_its_shutdown_runs() -> None:
    # A second re-check: the final check raised inside the app's lifespan, so one that
    # catches exceptions around its yield turned the refusal into "generator didn't
    # yield", and a yield-then-cleanup lifespan never ran its cleanup.
    events: list[str] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        events.append("startup")

        @app.get("/orgs/{org_id}/things")
        def things(org_id: str) -> dict[str, Any]:
            return {}

        try:
            yield
        except Exception:
            events.append("swallowed")
        events.append("shutdown")

    app = FastAPI(lifespan=lifespan)
    install(app, settings(env="production"))
    with pytest.raises(SettingsError, match="org_id"), TestClient(app):
        pass
    assert events == ["startup", "shutdown"]


def test_a_refusal_is_not_lost_to_an_error_of_the_apps_shutdown() -> None:
    # A third re-check: the shutdown's own exception replaced the refusal, and the
    # operator saw only "shutdown cleanup failed".
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        @app.get("/orgs/{org_id}/things")
        def things(org_id: str) -> dict[str, Any]:
            return {}

        yield
        raise RuntimeError("shutdown cleanup failed")

    app = FastAPI(lifespan=lifespan)
    install(app, settings(env="production"))
    with (
        capture_logs() as logs,
        pytest.raises(SettingsError, match="org_id") as refused,
        TestClient(app),
    ):
        pass
    assert "RuntimeError" in " ".join(getattr(refused.value, "__notes__", []))
    assert [entry["event"] for entry in logs if entry["log_level"] == "error"] == [
        "app_shutdown_failed"
    ]


def test_without_a_lifespan_the_first_request_is_refused_with_503_and_so_are_the_next() -> None:
    app = Starlette(routes=[Route("/items", ok)])
    install(app, settings(env="production"))
    app.add_route("/orgs/{org_id}/things", ok)
    client = TestClient(app)  # not entered: no lifespan runs
    with capture_logs() as logs:
        first = client.get("/healthz")
        second = client.get("/items")
    assert (first.status_code, second.status_code) == (503, 503)
    assert first.json()["code"] == "SERVICE_UNAVAILABLE"
    assert [entry["event"] for entry in logs if entry["log_level"] == "error"] == [
        "app_refused_by_policy",
        "app_refused_by_policy",
    ]


def test_outside_production_an_unbound_parameter_is_a_startup_warning() -> None:
    app = FastAPI()
    install(app, settings())

    @app.get("/workspaces/{workspace_id}")
    def workspace(workspace_id: str) -> dict[str, Any]:
        return {}

    with capture_logs() as logs, TestClient(app) as client:
        assert client.get("/healthz").status_code == 200
    warnings = [entry for entry in logs if entry.get("setting") == "HARDENKIT_TENANT_PATH_PARAMS"]
    assert len(warnings) == 1
    assert "workspace_id" in warnings[0]["message"]
    assert "refused in production" in warnings[0]["message"]


def test_a_real_uvicorn_does_not_start_a_production_app_with_a_late_unbound_route(
    tmp_path: Any,
) -> None:
    env = {
        "HARDENKIT_ENV": "production",
        "HARDENKIT_REDIS_URL": "",
        "HARDENKIT_JWT_SECRET": str(SAFE["jwt_secret"]),
        "HARDENKIT_JWT_ISSUER": ISSUER,
        "HARDENKIT_JWT_AUDIENCE": AUDIENCE,
    }
    log = tmp_path / "uvicorn.log"
    server = UvicornServer(
        "tests.auth.binding_app:late_route_app", env=env, factory=True, log_path=log
    )
    with pytest.raises(RuntimeError, match="exited"):
        server.start(timeout=20)
    text = log.read_text()
    assert "HARDENKIT_TENANT_PATH_PARAMS" in text
    assert "org_id" in text
    # Bound, the same app serves, and binds org_id.
    env["HARDENKIT_TENANT_PATH_PARAMS"] = "tenant_id,org_id"
    token = jwt.encode(claims(), str(SAFE["jwt_secret"]), algorithm="HS256")
    headers = {"Authorization": f"Bearer {token}"}
    with UvicornServer("tests.auth.binding_app:late_route_app", env=env, factory=True) as running:
        assert httpx.get(f"{running.url}/orgs/acme/things", headers=headers).status_code == 200
        assert httpx.get(f"{running.url}/orgs/globex/things", headers=headers).status_code == 403


def test_a_fastapi_query_parameter_that_names_a_tenant_must_be_bound_too() -> None:
    app = FastAPI()

    @app.get("/things")
    def things(org_id: str, page: int = 1) -> dict[str, Any]:
        return {}

    @app.get("/others")
    def others(workspace: str = Query(alias="workspaceId")) -> dict[str, Any]:
        return {}

    problems = {(p.setting, p.message.split(" (")[0]) for p in app_problems(settings(), app)}
    assert problems == {
        ("HARDENKIT_TENANT_QUERY_PARAMS", "query parameter 'org_id'"),
        ("HARDENKIT_TENANT_QUERY_PARAMS", "query parameter 'workspaceId'"),
    }
    bound = settings(
        tenant_query_params=["tenant_id", "org_id"], tenant_unbound_params=["workspaceId"]
    )
    assert app_problems(bound, app) == []
    with pytest.raises(SettingsError, match="org_id"):
        install(app, settings(env="production"))


def test_a_fastapi_header_parameter_that_names_a_tenant_must_be_an_alias() -> None:
    # A handler reading X-Org-ID served whatever tenant the client named (an attacker
    # round): only the tenant header and its aliases are checked against the token.
    app = FastAPI()

    @app.get("/things")
    def things(x_org_id: str = Header(), x_tenant_id: str = Header()) -> dict[str, Any]:
        return {}

    problems = {(p.setting, p.message.split(" (")[0]) for p in app_problems(settings(), app)}
    assert problems == {("HARDENKIT_TENANT_HEADER_ALIASES", "header 'x-org-id'")}
    assert app_problems(settings(tenant_header_aliases=["X-Org-ID"]), app) == []
    with pytest.raises(SettingsError, match="x-org-id"):
        install(app, settings(env="production"))


class _Filters(BaseModel):
    org_id: str
    other: str = Field(default="", alias="tenantId")
    page: int = 1


class _TenantHeaders(BaseModel):
    x_org_id: str
    x_request_tag: str = ""


def test_fastapi_parameter_models_are_read_field_by_field() -> None:
    # FastAPI reads a Query() or Header() model's fields as separate parameters: a
    # model with org_id served whatever tenant the query named (an attacker round).
    app = FastAPI()

    @app.get("/q")
    def by_query(filters: Annotated[_Filters, Query()]) -> dict[str, Any]:
        return {}

    @app.get("/h")
    def by_header(found: Annotated[_TenantHeaders, Header()]) -> dict[str, Any]:
        return {}

    problems = {(p.setting, p.message.split(" (")[0]) for p in app_problems(settings(), app)}
    assert problems == {
        ("HARDENKIT_TENANT_QUERY_PARAMS", "query parameter 'org_id'"),
        ("HARDENKIT_TENANT_QUERY_PARAMS", "query parameter 'tenantId'"),
        ("HARDENKIT_TENANT_HEADER_ALIASES", "header 'x-org-id'"),
    }
    bound = settings(
        tenant_query_params=["tenant_id", "org_id", "tenantId"],
        tenant_header_aliases=["X-Org-Id"],
    )
    assert app_problems(bound, app) == []
    with pytest.raises(SettingsError, match="org_id"):
        install(app, settings(env="production"))


class _ByName(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    org: str = Field(alias="scope")  # read as ?scope= and, by name, as ?org=
    other: str = Field(default="", validation_alias=AliasChoices("x", "workspace_id"))


class _BodyUnionA(BaseModel):
    account_id: str


class _BodyUnionB(BaseModel):
    note: str


def test_every_name_fastapi_reads_a_parameter_under_is_checked() -> None:
    # A re-check by an attacker: validation_alias, AliasChoices, populate_by_name and
    # optional or union models each let a client name the tenant past the check.
    app = FastAPI()

    @app.get("/alias")
    def by_validation_alias(
        x: Annotated[str, Query(validation_alias="org_id")],
        h: Annotated[str, Header(validation_alias="x-team-id")] = "",
        c: Annotated[str, Cookie(validation_alias="teamId")] = "",
    ) -> dict[str, Any]:
        return {}

    @app.get("/model")
    def by_optional_model(f: Annotated[_ByName | None, Query()] = None) -> dict[str, Any]:
        return {}

    @app.post("/union")
    def by_union(body: _BodyUnionA | _BodyUnionB) -> dict[str, Any]:
        return {}

    @app.post("/body-alias")
    def by_body_alias(
        scope: Annotated[str, Body(embed=True, validation_alias="customer_id")],
    ) -> dict[str, Any]:
        return {}

    problems = {(p.setting, p.message.split(" (")[0]) for p in app_problems(settings(), app)}
    assert problems == {
        ("HARDENKIT_TENANT_QUERY_PARAMS", "query parameter 'org_id'"),
        ("HARDENKIT_TENANT_QUERY_PARAMS", "query parameter 'org'"),
        ("HARDENKIT_TENANT_QUERY_PARAMS", "query parameter 'workspace_id'"),
        ("HARDENKIT_TENANT_HEADER_ALIASES", "header 'x-team-id'"),
        ("HARDENKIT_TENANT_UNBOUND_PARAMS", "cookie 'teamId'"),
        ("HARDENKIT_TENANT_UNBOUND_PARAMS", "body field 'account_id'"),
        ("HARDENKIT_TENANT_UNBOUND_PARAMS", "body field 'customer_id'"),
    }


def test_a_header_auth_reads_as_the_tenant_header_is_bound_in_any_spelling() -> None:
    # Auth reads X_Tenant_ID as X-Tenant-ID (checked, then removed): not unbound.
    app = FastAPI()

    @app.get("/h")
    def by_header(
        tenant: Annotated[str, Header(alias="x_tenant_id", convert_underscores=False)],
        org: Annotated[str, Header(alias="X_Org_Id", convert_underscores=False)] = "",
    ) -> dict[str, Any]:
        return {}

    assert app_problems(settings(tenant_header_aliases=["X-Org-ID"]), app) == []


def test_a_fastapi_cookie_that_names_a_tenant_is_flagged_as_never_bound() -> None:
    # A cookie is the client's to set and nothing checks it against the token.
    app = FastAPI()

    @app.get("/c")
    def by_cookie(tenant_id: Annotated[str, Cookie()]) -> dict[str, Any]:
        return {}

    @app.get("/aliased")
    def aliased(org: Annotated[str, Cookie(alias="orgId")] = "") -> dict[str, Any]:
        return {}

    problems = {(p.setting, p.message.split(" (")[0]) for p in app_problems(settings(), app)}
    assert problems == {
        ("HARDENKIT_TENANT_UNBOUND_PARAMS", "cookie 'orgId'"),
        ("HARDENKIT_TENANT_UNBOUND_PARAMS", "cookie 'tenant_id'"),
    }
    # Binding the name in the query does not bind a cookie: only a declaration does.
    assert app_problems(settings(tenant_query_params=["tenant_id"]), app) != []
    assert app_problems(settings(tenant_unbound_params=["tenant_id", "orgId"]), app) == []
    with pytest.raises(SettingsError, match="cookie 'orgId'"):
        install(app, settings(env="production"))


class _Order(BaseModel):
    tenant: str = Field(alias="tenantId")
    item: str


def test_a_fastapi_body_field_that_names_a_tenant_is_flagged_as_never_bound() -> None:
    app = FastAPI()

    @app.post("/orders")
    def orders(order: _Order) -> dict[str, Any]:
        return {}

    @app.post("/notes")
    def notes(
        tenant_id: Annotated[str, Body(embed=True)], text: Annotated[str, Body(embed=True)]
    ) -> dict[str, Any]:
        return {}

    problems = {(p.setting, p.message.split(" (")[0]) for p in app_problems(settings(), app)}
    assert problems == {
        ("HARDENKIT_TENANT_UNBOUND_PARAMS", "body field 'tenantId'"),
        ("HARDENKIT_TENANT_UNBOUND_PARAMS", "body field 'tenant_id'"),
    }
    # Binding the name in the query or path does not bind a body: only a declaration does.
    assert app_problems(settings(tenant_query_params=["tenant_id"]), app) != []
    declared = settings(tenant_unbound_params=["tenantId", "tenant_id"])
    assert app_problems(declared, app) == []
    with pytest.raises(SettingsError, match="tenantId"):
        install(app, settings(env="production"))


def test_a_public_path_no_route_serves_is_a_warning() -> None:
    # A new-user review: /status/ for a route at /status, and the root path written in,
    # made nothing public; the route answered 401 with nothing said.
    app = Starlette(routes=[Route("/status", ok), Mount("/v1", routes=[Route("/ping", ok)])])

    def warned(*paths: str) -> list[str]:
        found = app_problems(settings(public_paths=list(paths)), app)
        return [p.message for p in found if p.setting == "HARDENKIT_PUBLIC_PATHS"]

    assert warned("/status", "/v1/ping", "/v1/*", "/healthz") == []
    (message,) = warned("/status/", "/billing/status", "/v1/ping")
    assert "/status/" in message
    assert "/billing/status" in message
    assert "/v1/ping" not in message
    assert "routes near it: /status)" in message  # the route /status/ misses by its slash
    # Only once the routes are complete: more may be added after install().
    assert [
        p
        for p in app_problems(settings(public_paths=["/later"]), app, complete=False)
        if p.setting == "HARDENKIT_PUBLIC_PATHS"
    ] == []
