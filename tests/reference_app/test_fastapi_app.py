"""The FastAPI twin of the reference app: same settings, same answers, dependencies and docs."""

from __future__ import annotations

import pytest
from fastapi import APIRouter, FastAPI
from starlette.testclient import TestClient

from examples.reference_app.fastapi_app import CurrentPrincipal, create_app
from examples.reference_app.settings import DEMO_DEFAULTS, FASTAPI_DEMO_DEFAULTS
from hardenkit import HardenSettings, install
from tests.headers.test_docs_preset import ReceivedPolicy, assert_page_renders_under


@pytest.fixture(scope="module")
def client() -> TestClient:
    # The strict per-ip login limit (5/15m) is the rate limiter's to test, not ours.
    return TestClient(
        create_app(HardenSettings(**FASTAPI_DEMO_DEFAULTS, rate_limit_auth="1000/15m"))
    )


def login(client: TestClient, user: str) -> dict[str, str]:
    response = client.post(
        "/auth/token", json={"username": user, "password": f"{user}-demo-password"}
    )
    assert response.status_code == 200
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def test_a_demo_token_gets_the_verified_principal_from_api_me(client: TestClient) -> None:
    response = client.get("/api/me", headers=login(client, "alice"))
    assert response.status_code == 200
    body = response.json()
    assert (body["subject"], body["tenant"], body["roles"]) == ("alice", "acme", ["member"])
    assert body["claims"]["iss"] == DEMO_DEFAULTS["jwt_issuer"]
    assert response.headers["x-request-id"]
    assert response.headers["content-security-policy"].startswith("default-src 'none'")


def test_api_me_without_a_token_is_a_401_problem_from_the_auth_layer(client: TestClient) -> None:
    response = client.get("/api/me")
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "AUTHENTICATION_ERROR"
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_admin_stats_depend_on_the_admin_role(client: TestClient) -> None:
    member = client.get("/api/admin/stats", headers=login(client, "alice"))
    assert member.status_code == 403
    assert member.json()["code"] == "AUTHORIZATION_ERROR"
    admin = client.get("/api/admin/stats", headers=login(client, "bob"))
    assert admin.status_code == 200
    assert admin.json()["tenants"] == 2


def test_a_tenant_in_the_path_other_than_the_tokens_is_refused(client: TestClient) -> None:
    headers = login(client, "carol")
    own = client.get("/api/tenants/globex/items", headers=headers)
    assert own.status_code == 200
    assert own.json()["tenant"] == "globex"
    other = client.get("/api/tenants/acme/items", headers=headers)
    assert other.status_code == 403
    assert other.json()["code"] == "TENANT_MISMATCH"
    spoofed = client.get("/api/me", headers={**headers, "X-Tenant-ID": "acme"})
    assert spoofed.status_code == 403


def test_the_fastapi_twin_answers_exactly_like_the_starlette_app(client: TestClient) -> None:
    from examples.reference_app.app import create_app as create_starlette_app

    starlette = TestClient(
        create_starlette_app(HardenSettings(**DEMO_DEFAULTS, rate_limit_auth="1000/15m"))
    )
    headers = login(client, "bob")
    for path in ("/api/me", "/api/tenants/acme/items"):
        assert (
            client.get(path, headers=headers).json() == starlette.get(path, headers=headers).json()
        )


def test_docs_page_is_served_with_a_csp_that_allows_exactly_its_scripts(
    client: TestClient,
) -> None:
    for path in ("/docs", "/redoc"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert response.headers["content-type"].startswith("text/html")
        csp = ReceivedPolicy(response.headers["content-security-policy"])
        assets = assert_page_renders_under(response.text, csp)
        assert assets.script_urls, path
        assert csp.sources("object-src") == ("'none'",)
    # The preset is for the docs pages only: the app's own page keeps the nonce-only policy.
    home = ReceivedPolicy(client.get("/").headers["content-security-policy"])
    assert "https://cdn.jsdelivr.net" not in home.sources("script-src")


def test_openapi_document_declares_the_bearer_scheme_on_the_tenant_api(
    client: TestClient,
) -> None:
    document = client.get("/openapi.json").json()
    scheme = document["components"]["securitySchemes"]["HTTPBearer"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    for path in ("/api/me", "/api/tenants/{tenant_id}/items"):
        assert document["paths"][path]["get"]["security"] == [{"HTTPBearer": []}], path
    # OpenAPI 3.1: a bearer requirement may list the roles it needs.
    assert document["paths"]["/api/admin/stats"]["get"]["security"] == [{"HTTPBearer": ["admin"]}]
    assert "security" not in document["paths"]["/auth/token"]["post"]
    assert "/api/upstream" in document["paths"]  # the Starlette handlers, reused as they are


def test_a_tenant_in_the_path_of_an_included_router_is_refused_too() -> None:
    router = APIRouter(prefix="/v2")

    @router.get("/tenants/{tenant_id}/items")
    async def items(tenant_id: str, principal: CurrentPrincipal) -> dict[str, str]:
        return {"path_tenant": tenant_id}

    app = FastAPI()
    app.include_router(router)
    app.add_api_route("/auth/token", _token_endpoint(), methods=["POST"])
    install(app, HardenSettings(**DEMO_DEFAULTS, rate_limit_auth="1000/15m"))
    client = TestClient(app)
    headers = login(client, "alice")
    refused = client.get("/v2/tenants/globex/items", headers=headers)
    assert refused.status_code == 403
    assert refused.json()["code"] == "TENANT_MISMATCH"
    assert client.get("/v2/tenants/acme/items", headers=headers).status_code == 200


def test_a_tenant_in_the_path_of_a_router_included_in_a_router_is_refused_too() -> None:
    inner = APIRouter(prefix="/tenants/{tenant_id}")

    @inner.get("/items")
    async def items(tenant_id: str, principal: CurrentPrincipal) -> dict[str, str]:
        return {"path_tenant": tenant_id}

    outer = APIRouter(prefix="/v3")
    outer.include_router(inner)
    app = FastAPI()
    app.include_router(outer, prefix="/edge")
    app.add_api_route("/auth/token", _token_endpoint(), methods=["POST"])
    install(app, HardenSettings(**DEMO_DEFAULTS, rate_limit_auth="1000/15m"))
    client = TestClient(app)
    headers = login(client, "alice")
    assert client.get("/edge/v3/tenants/globex/items", headers=headers).status_code == 403
    assert client.get("/edge/v3/tenants/acme/items", headers=headers).status_code == 200


def _token_endpoint() -> object:
    from examples.reference_app.token import issue_token

    return issue_token


def test_principal_injection_is_a_plain_dependency_usable_in_any_route() -> None:
    app = FastAPI()

    @app.get("/whoami")
    async def whoami(principal: CurrentPrincipal) -> dict[str, str | None]:
        return {"subject": principal.subject, "tenant": principal.tenant}

    app.add_api_route("/auth/token", _token_endpoint(), methods=["POST"])
    install(app, HardenSettings(**DEMO_DEFAULTS, rate_limit_auth="1000/15m"))
    client = TestClient(app)
    answer = client.get("/whoami", headers=login(client, "carol"))
    assert answer.json() == {"subject": "carol", "tenant": "globex"}
