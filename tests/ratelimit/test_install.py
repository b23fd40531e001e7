"""``install()`` wires one limiter before auth (per client ip) and one after (per tenant)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from hardenkit import HardenSettings, install
from hardenkit.ratelimit import MemoryStore, RedisStore
from tests.auth.support import AUDIENCE, ISSUER, SECRET, claims, hs256
from tests.support.redis_server import RedisServer


async def hello(request: Request) -> Response:
    return PlainTextResponse("hello")


def hardened(**values: object) -> tuple[Starlette, TestClient]:
    app = Starlette(
        routes=[Route("/auth/token", hello, methods=["POST"]), Route("/api/items", hello)]
    )
    settings = HardenSettings(
        jwt_secret=SECRET,
        jwt_issuer=ISSUER,
        jwt_audience=[AUDIENCE],
        public_paths=["/healthz", "/readyz", "/auth/*"],
        **values,
    )
    install(app, settings)
    return app, TestClient(app, client=("203.0.113.20", 40000))


def bearer(tenant: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {hs256(claims(tenant_id=tenant))}"}


def test_the_auth_paths_get_the_strict_per_ip_limit_and_health_is_exempt() -> None:
    _, client = hardened(rate_limit_auth="3/15m", rate_limit_default="100/15m")
    statuses = [client.post("/auth/token").status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    assert [client.get("/healthz").status_code for _ in range(10)] == [200] * 10


def test_unauthenticated_requests_are_counted_per_ip_before_auth_refuses_them() -> None:
    _, client = hardened(rate_limit_default="3/15m")
    assert [client.get("/api/items").status_code for _ in range(4)] == [401, 401, 401, 429]


def test_api_routes_are_limited_per_verified_tenant_after_auth() -> None:
    _, client = hardened(rate_limit_tenant="2/15m", rate_limit_default="100/15m")
    acme = [client.get("/api/items", headers=bearer("acme")) for _ in range(3)]
    assert [response.status_code for response in acme] == [200, 200, 429]
    # The per-ip rule before auth applied too: both are listed.
    assert acme[0].headers["ratelimit"] == '"ip";r=99;t=9, "tenant";r=1;t=450'
    assert acme[2].json()["code"] == "RATE_LIMITED"
    assert acme[2].headers["ratelimit"] == '"tenant";r=0;t=900'
    assert acme[2].headers["retry-after"] == "450"
    assert client.get("/api/items", headers=bearer("globex")).status_code == 200


def test_memory_only_without_a_redis_url() -> None:
    app, _ = hardened()
    assert isinstance(app.state.hardenkit.rate_limit_store, MemoryStore)


@pytest.mark.redis
def test_with_redis_the_limits_share_the_apps_guard_and_readiness_degrades_while_it_is_down(
    redis_server_factory: Callable[[], RedisServer],
) -> None:
    server = redis_server_factory()
    app, client = hardened(redis_url=server.url, rate_limit_default="3/15m")
    kit = app.state.hardenkit
    assert isinstance(kit.rate_limit_store, RedisStore)
    assert kit.rate_limit_store.guard is kit.redis_guard
    with client:
        assert client.post("/auth/token").status_code == 200
        redis_check = client.get("/readyz").json()["checks"]["redis"]
        assert redis_check["status"] == "healthy"
        deadline = time.monotonic() + 10.0  # a heartbeat every 1.7 s, counted at ~3.3 s
        while not redis_check["counted_by_others"] and time.monotonic() < deadline:
            time.sleep(0.1)  # until a heartbeat has shown that it counts every instance
            redis_check = client.get("/readyz").json()["checks"]["redis"]
        assert redis_check["counted_by_others"]
        server.stop()
        statuses = [client.post("/auth/token").status_code for _ in range(4)]
        # The fallback starts from what Redis last said: 2 of 3 left, not a fresh bucket.
        assert statuses == [200, 200, 429, 429]
        ready = client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["checks"]["redis"]["status"] == "degraded"
