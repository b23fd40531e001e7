"""The peer stack the throughput benchmark compares against does the whole job.

A cheaper peer would flatter hardenkit's ratio: each piece must answer as a user of
those libraries would rely on.
"""

from __future__ import annotations

import asyncio
import time

import jwt
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from benchmarks._peer_stack import AsyncioTimeoutMiddleware, peer_app
from benchmarks._throughput_apps import AUDIENCE, CORS_ORIGIN, ISSUER, SECRET, token


def _client(rate: str = "1000/second") -> TestClient:
    app = peer_app(
        storage_uri="memory://",
        secret=SECRET,
        issuer=ISSUER,
        audience=AUDIENCE,
        cors_origin=CORS_ORIGIN,
        rate=rate,
    )
    return TestClient(app, base_url="https://testserver")


def _bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def test_peer_stack_answers_a_valid_token_with_id_and_security_headers() -> None:
    response = _client().get("/api/me", headers=_bearer(token()))
    assert response.status_code == 200
    assert response.json() == {"subject": "alice", "tenant": "acme"}
    assert response.headers["x-request-id"]
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "max-age" in response.headers["strict-transport-security"]


def test_peer_stack_refuses_missing_forged_and_tenantless_tokens() -> None:
    client = _client()
    now = int(time.time())
    tenantless = jwt.encode(
        {"sub": "alice", "iss": ISSUER, "aud": AUDIENCE, "exp": now + 60}, SECRET, "HS256"
    )
    forged = jwt.encode(
        {"sub": "alice", "tenant_id": "acme", "iss": ISSUER, "aud": AUDIENCE, "exp": now + 60},
        "another-secret-" + "y" * 40,
        "HS256",
    )
    assert client.get("/api/me").status_code == 401
    assert client.get("/api/me", headers=_bearer(forged)).status_code == 401
    assert client.get("/api/me", headers=_bearer(tenantless)).status_code == 401


def test_peer_stack_limits_requests() -> None:
    client = _client(rate="1/minute")
    assert client.get("/api/me", headers=_bearer(token())).status_code == 200
    assert client.get("/api/me", headers=_bearer(token())).status_code == 429


def test_peer_stack_answers_cors_preflights_for_its_origin() -> None:
    response = _client().options(
        "/api/me",
        headers={"Origin": CORS_ORIGIN, "Access-Control-Request-Method": "GET"},
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == CORS_ORIGIN


def test_peer_timeout_cancels_a_stuck_handler_and_answers_504() -> None:
    cancelled = []

    async def stuck(request: Request) -> Response:
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise
        return PlainTextResponse("late")

    app = AsyncioTimeoutMiddleware(Starlette(routes=[Route("/", stuck)]), seconds=0.05)
    response = TestClient(app).get("/")
    assert response.status_code == 504
    assert cancelled == [True]
