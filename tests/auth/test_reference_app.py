"""The reference app: demo login, /api/me, tenant-bound items, admin stats."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from examples.reference_app.app import create_app
from examples.reference_app.settings import DEMO_DEFAULTS
from hardenkit import HardenSettings
from hardenkit.settings import SettingsError, load_settings


@pytest.fixture(scope="module")
def client() -> TestClient:
    # The strict per-ip login limit (5/15m) is the rate limiter's to test, not ours.
    return TestClient(create_app(HardenSettings(**DEMO_DEFAULTS, rate_limit_auth="1000/15m")))


def login(client: TestClient, user: str) -> dict[str, str]:
    response = client.post(
        "/auth/token", json={"username": user, "password": f"{user}-demo-password"}
    )
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def test_me_returns_the_verified_principal(client: TestClient) -> None:
    body = client.get("/api/me", headers=login(client, "alice")).json()
    assert body["subject"] == "alice"
    assert body["tenant"] == "acme"
    assert body["claims"]["iss"] == DEMO_DEFAULTS["jwt_issuer"]


def test_tenant_items_are_bound_to_the_token_tenant(client: TestClient) -> None:
    headers = login(client, "carol")
    assert client.get("/api/tenants/globex/items", headers=headers).json()["tenant"] == "globex"
    other = client.get("/api/tenants/acme/items", headers=headers)
    assert other.status_code == 403
    assert other.json()["code"] == "TENANT_MISMATCH"
    spoofed = client.get("/api/me", headers={**headers, "X-Tenant-ID": "acme"})
    assert spoofed.status_code == 403


def test_admin_stats_need_the_admin_role(client: TestClient) -> None:
    assert client.get("/api/admin/stats", headers=login(client, "bob")).status_code == 200
    assert client.get("/api/admin/stats", headers=login(client, "alice")).status_code == 403
    assert client.get("/api/admin/stats").status_code == 401


def test_a_wrong_password_gets_401_and_bad_bodies_get_400(client: TestClient) -> None:
    wrong = client.post("/auth/token", json={"username": "bob", "password": "guess"})
    assert wrong.status_code == 401
    assert client.post("/auth/token", content=b"[[[[").status_code == 400


def test_production_refuses_the_demo_jwt_secret() -> None:
    with pytest.raises(SettingsError, match="HARDENKIT_JWT_SECRET"):
        load_settings(env="production", **DEMO_DEFAULTS)
