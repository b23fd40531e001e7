from __future__ import annotations

from collections.abc import Callable

import pytest
from redis.asyncio import Redis

from hardenkit import HardenSettings, HealthStatus, RedisGuard
from hardenkit.stores import create_redis
from tests.support.redis_server import RedisServer


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def memory() -> str:
    return "memory"


@pytest.mark.redis
async def test_guard_uses_redis_while_it_answers(redis_client: Redis) -> None:
    guard = RedisGuard("test", timeout=1.0)

    async def ping() -> str:
        return "redis" if await redis_client.ping() else "?"

    assert await guard.call(ping, memory) == "redis"
    assert not guard.using_fallback
    assert (await guard.health_check()).status is HealthStatus.HEALTHY


@pytest.mark.redis
async def test_guard_falls_back_at_once_and_returns_after_redis_restarts(
    redis_server_factory: Callable[[], RedisServer],
) -> None:
    server = redis_server_factory()
    client = Redis.from_url(server.url, socket_timeout=0.05, socket_connect_timeout=0.05)
    clock = Clock()
    guard = RedisGuard("test", timeout=0.2, retry_interval=2.0, clock=clock)

    async def ping() -> str:
        await client.ping()
        return "redis"

    try:
        assert await guard.call(ping, memory) == "redis"
        server.stop()
        assert await guard.call(ping, memory) == "memory"
        assert guard.using_fallback
        assert guard.fallback_activations == 1
        assert (await guard.health_check()).status is HealthStatus.DEGRADED
        server.start()
        # Before the retry interval the fallback keeps answering, without touching Redis.
        assert await guard.call(ping, memory) == "memory"
        clock.now += 2.0
        assert await guard.call(ping, memory) == "redis"
        assert not guard.using_fallback
    finally:
        await client.aclose()


async def test_guard_times_out_a_hung_call_and_falls_back() -> None:
    import asyncio

    guard = RedisGuard("test", timeout=0.05)

    async def hangs() -> str:
        await asyncio.sleep(5)
        return "redis"

    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await guard.call(hangs, memory) == "memory"
    assert loop.time() - started < 0.5


async def test_guard_lets_application_errors_through() -> None:
    guard = RedisGuard("test")

    async def bug() -> str:
        raise ValueError("not a redis problem")

    with pytest.raises(ValueError, match="not a redis problem"):
        await guard.call(bug, memory)
    assert not guard.using_fallback


async def test_only_one_probe_is_sent_while_one_is_in_flight() -> None:
    clock = Clock()
    guard = RedisGuard("test", retry_interval=1.0, clock=clock)

    async def refuse() -> str:
        raise ConnectionError

    await guard.call(refuse, memory)
    clock.now += 1.0
    assert guard._may_call_redis()
    assert not guard._may_call_redis()


def test_create_redis_is_none_without_url() -> None:
    assert create_redis(HardenSettings()) is None


def test_create_redis_uses_the_socket_timeout() -> None:
    client = create_redis(
        HardenSettings(redis_url="redis://127.0.0.1:1/0", redis_socket_timeout=0.07)
    )  # type: ignore[arg-type]
    assert isinstance(client, Redis)
    assert client.connection_pool.connection_kwargs["socket_timeout"] == 0.07


@pytest.mark.redis
def test_readyz_reports_redis_degraded_then_healthy_without_other_traffic(
    redis_server_factory: Callable[[], RedisServer],
) -> None:
    import time

    from starlette.applications import Starlette
    from starlette.testclient import TestClient

    from hardenkit import install

    server = redis_server_factory()
    app = Starlette()
    install(
        app,
        HardenSettings(
            redis_url=server.url,  # type: ignore[arg-type]
            redis_socket_timeout=0.2,
            redis_retry_interval=0.2,
        ),
    )
    with TestClient(app) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["checks"]["redis"]["backend"] == "redis"
        assert ready.json()["status"] == "healthy"
        server.stop()
        degraded = client.get("/readyz")
        assert degraded.status_code == 200
        assert degraded.json()["status"] == "degraded"
        assert degraded.json()["checks"]["redis"]["backend"] == "memory"
        server.start()
        deadline = time.monotonic() + 5
        status = "degraded"
        while status != "healthy" and time.monotonic() < deadline:
            time.sleep(0.1)
            status = client.get("/readyz").json()["status"]
        assert status == "healthy"
