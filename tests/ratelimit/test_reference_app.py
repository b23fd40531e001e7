"""The reference app: demo login limited per ip, API routes limited per tenant."""

from __future__ import annotations

from starlette.testclient import TestClient

from examples.reference_app.app import create_app
from examples.reference_app.settings import DEMO_DEFAULTS
from hardenkit import HardenSettings


def reference_client(**values: object) -> TestClient:
    settings = HardenSettings(**{**DEMO_DEFAULTS, **values})
    return TestClient(create_app(settings), client=("203.0.113.77", 40000))


def test_the_demo_login_gets_five_attempts_per_ip_right_or_wrong() -> None:
    client = reference_client()
    wrong = {"username": "alice", "password": "guess"}
    statuses = [client.post("/auth/token", json=wrong).status_code for _ in range(5)]
    assert statuses == [401] * 5
    right = {"username": "alice", "password": "alice-demo-password"}
    refused = client.post("/auth/token", json=right)
    assert refused.status_code == 429
    assert refused.json()["code"] == "RATE_LIMITED"
    assert int(refused.headers["retry-after"]) == 180


def test_api_routes_are_limited_per_tenant() -> None:
    client = reference_client(rate_limit_tenant="3/15m")

    def login(user: str) -> dict[str, str]:
        body = {"username": user, "password": f"{user}-demo-password"}
        token = client.post("/auth/token", json=body).json()["access_token"]
        return {"Authorization": f"Bearer {token}"}

    alice, carol = login("alice"), login("carol")
    statuses = [client.get("/api/me", headers=alice).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    assert client.get("/api/me", headers=carol).status_code == 200
