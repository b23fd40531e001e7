"""The example test of docs/testing.md: a user's FastAPI app tested with hardenkit.testing.

docs/testing.md includes this file as it is, so the page shows what the suite runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from examples.user_app.app import create_app
from hardenkit import HardenSettings
from hardenkit.testing import JWKSServer, TokenIssuer, limits_disabled, override_principal


@pytest.fixture
def app(hardenkit_issuer: TokenIssuer) -> FastAPI:
    # The app trusts the test issuer's tokens and nothing else.
    settings = HardenSettings(env="test", public_paths=["/auth/*"], **hardenkit_issuer.settings())
    return create_app(settings)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_member_reads_the_orders_of_its_tenant(
    client: TestClient, hardenkit_issuer: TokenIssuer
) -> None:
    token = hardenkit_issuer.mint("alice", tenant="acme", roles=["reader"])
    response = client.get("/api/tenants/acme/orders", headers=bearer(token))
    assert response.status_code == 200
    assert response.json() == {"tenant": "acme", "subject": "alice", "orders": []}


def test_the_orders_of_another_tenant_are_refused(
    client: TestClient, hardenkit_issuer: TokenIssuer
) -> None:
    token = hardenkit_issuer.mint("alice", tenant="acme")
    response = client.get("/api/tenants/globex/orders", headers=bearer(token))
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "TENANT_MISMATCH"


def test_an_expired_token_is_refused(client: TestClient, hardenkit_issuer: TokenIssuer) -> None:
    token = hardenkit_issuer.mint("alice", tenant="acme", expires_in=-120)
    response = client.get("/api/tenants/acme/orders", headers=bearer(token))
    assert response.status_code == 401
    assert response.json()["code"] == "AUTHENTICATION_ERROR"
    assert "expired" in response.headers["www-authenticate"]


def test_a_token_for_another_api_is_refused(
    client: TestClient, hardenkit_issuer: TokenIssuer
) -> None:
    token = hardenkit_issuer.mint("alice", tenant="acme", claims={"aud": "billing-api"})
    response = client.get("/api/tenants/acme/orders", headers=bearer(token))
    assert response.status_code == 401


def test_a_principal_can_stand_in_for_a_token(client: TestClient) -> None:
    with override_principal(subject="bob", tenant="acme"):
        mine = client.get("/api/tenants/acme/orders")
        theirs = client.get("/api/tenants/globex/orders")
    assert mine.json()["subject"] == "bob"
    assert theirs.status_code == 403  # the tenant is still bound to the principal's
    assert client.get("/api/tenants/acme/orders").status_code == 401  # override over


def test_login_is_limited_per_client_ip(client: TestClient) -> None:
    statuses = [client.post("/auth/login").status_code for _ in range(6)]
    assert statuses == [200] * 5 + [429]  # HARDENKIT_RATE_LIMIT_AUTH: 5/15m


def test_reset_gives_back_full_rate_limit_buckets(
    app: FastAPI, client: TestClient, hardenkit_reset: Callable[..., None]
) -> None:
    for _ in range(5):
        client.post("/auth/login")
    assert client.post("/auth/login").status_code == 429
    hardenkit_reset(app.state.hardenkit)  # also closes breakers, forgets webhook ids
    assert client.post("/auth/login").status_code == 200


def test_limits_can_be_switched_off_for_a_test(client: TestClient) -> None:
    with limits_disabled():
        statuses = {client.post("/auth/login").status_code for _ in range(20)}
    assert statuses == {200}


def test_rs256_tokens_from_a_jwks_endpoint_are_accepted(
    hardenkit_jwks_server: JWKSServer, hardenkit_rs256_issuer: TokenIssuer
) -> None:
    settings = HardenSettings(env="test", **hardenkit_jwks_server.settings())
    with TestClient(create_app(settings)) as client:
        token = hardenkit_rs256_issuer.mint("carol", tenant="acme")
        response = client.get("/api/tenants/acme/orders", headers=bearer(token))
    assert response.status_code == 200
    assert hardenkit_jwks_server.requests >= 1
