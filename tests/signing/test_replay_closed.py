"""Replay protection ``closed`` while Redis is down: 503 with Retry-After, never twice."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from hardenkit import ReplayStore, ReplayStoreUnavailableError, install, sign_webhook
from hardenkit.settings import HardenSettings
from hardenkit.stores import RedisGuard
from tests.signing.test_middleware import BODY, SECRET, Handler, make_app
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.redis


def instance(url: str, handler: Handler) -> TestClient:
    """One instance: its own client, guard and replay store on the shared Redis."""
    client = Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
    guard = RedisGuard("replay", timeout=1.0, retry_interval=60.0)
    store = ReplayStore(client, guard=guard, when_down="closed")
    return TestClient(make_app(handler, replay_store=store))


def test_with_redis_down_two_closed_instances_never_process_a_redelivery_twice(
    redis_server_factory: Callable[[], RedisServer],
) -> None:
    server = redis_server_factory()
    handler = Handler()
    first, second = instance(server.url, handler), instance(server.url, handler)
    with first, second:
        processed = first.post(
            "/webhooks/in",
            content=BODY,
            headers=sign_webhook(BODY, SECRET, webhook_id="msg_before"),
        )
        assert processed.status_code == 200
        server.stop()
        answers = [
            client.post(
                "/webhooks/in",
                content=BODY,
                headers=sign_webhook(BODY, SECRET, webhook_id=webhook_id),
            )
            for client in (second, first, second)
            for webhook_id in ("msg_before", "msg_during")
        ]
    assert [answer.status_code for answer in answers] == [503] * 6
    for answer in answers:
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.json()["code"] == "SERVICE_UNAVAILABLE"
        assert int(answer.headers["retry-after"]) >= 1
    assert handler.processed == [("msg_before", BODY)]  # once, before the outage


def test_after_redis_returns_a_delivery_refused_while_closed_is_processed_once(
    redis_server_factory: Callable[[], RedisServer],
) -> None:
    server = redis_server_factory()
    handler = Handler()
    client = Redis.from_url(server.url, socket_timeout=1.0, socket_connect_timeout=1.0)
    guard = RedisGuard("replay", timeout=1.0, retry_interval=0.01)
    store = ReplayStore(client, guard=guard, when_down="closed")
    with TestClient(make_app(handler, replay_store=store)) as http:
        server.stop()
        headers = sign_webhook(BODY, SECRET, webhook_id="msg_retry")
        assert http.post("/webhooks/in", content=BODY, headers=headers).status_code == 503
        server.start()
        statuses = []
        for _ in range(200):  # bounded: the first call after the interval is the probe
            statuses.append(http.post("/webhooks/in", content=BODY, headers=headers).status_code)
            if statuses[-1] == 200 and len(handler.processed) == 1:
                break
        assert statuses[-1] == 200
        assert http.post("/webhooks/in", content=BODY, headers=headers).json() != {
            "processed": True
        }
    assert handler.processed == [("msg_retry", BODY)]


async def test_a_nonce_is_refused_rather_than_remembered_per_process_while_closed() -> None:
    guard = RedisGuard("replay", timeout=1.0)
    store = ReplayStore(Redis.from_url("redis://127.0.0.1:1/0"), guard=guard, when_down="closed")
    with pytest.raises(ReplayStoreUnavailableError) as unavailable:
        await store.remember("nonce:k:n1", ttl=60)
    assert unavailable.value.status == 503
    assert unavailable.value.headers == {"Retry-After": "2"}
    assert (await store.health_check()).status.value == "unhealthy"
    fallback = ReplayStore(Redis.from_url("redis://127.0.0.1:1/0"), guard=RedisGuard("r"))
    assert await fallback.remember("nonce:k:n1", ttl=60)  # per process, as documented
    assert (await fallback.health_check()).detail["backend"] == "memory"


def test_installed_closed_replay_makes_readiness_report_the_store_unhealthy(
    redis_server_factory: Callable[[], RedisServer],
) -> None:
    server = redis_server_factory()

    async def ok(request: Request) -> Response:
        return JSONResponse({})

    app = Starlette(routes=[Route("/", ok)])
    install(
        app,
        HardenSettings(
            redis_url=server.url,  # type: ignore[arg-type]
            replay_redis_down="closed",
            redis_retry_interval=60,
        ),
    )
    with TestClient(app) as client:
        assert client.get("/readyz").json()["checks"]["replay"]["status"] == "healthy"
        server.stop()
        ready = client.get("/readyz")
    assert ready.status_code == 200  # degraded overall: the instance serves its other routes
    assert ready.json()["status"] == "degraded"
    assert ready.json()["checks"]["replay"] == {
        "status": "unhealthy",
        "when_down": "closed",
        "backend": "none",
    }


def test_production_with_shared_replay_in_fallback_is_warned_about() -> None:
    settings = HardenSettings(
        env="production",
        redis_url="redis://127.0.0.1:6390/0",  # type: ignore[arg-type]
        webhook_paths=["/webhooks/*"],
        webhook_secret=SECRET,  # type: ignore[arg-type]
    )
    assert "HARDENKIT_REPLAY_REDIS_DOWN" in {problem.setting for problem in settings.problems()}
