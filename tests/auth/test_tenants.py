"""TenantStatusCache: answers cached in Redis, memory while Redis is down."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from redis.asyncio import Redis

from hardenkit import RedisGuard
from hardenkit.auth import TenantStatusCache
from tests.support.redis_server import RedisServer


class Accounts:
    def __init__(self, inactive: set[str]) -> None:
        self.inactive = inactive
        self.calls = 0

    async def is_active(self, tenant_id: str) -> bool:
        self.calls += 1
        return tenant_id not in self.inactive


async def test_without_a_resolver_every_tenant_is_active() -> None:
    assert await TenantStatusCache().is_active("anyone") is True


async def test_memory_only_answers_are_reused_for_the_ttl() -> None:
    now = [0.0]
    accounts = Accounts({"acme"})
    cache = TenantStatusCache(accounts, ttl=10, clock=lambda: now[0])
    assert await cache.is_active("acme") is False
    assert await cache.is_active("acme") is False
    assert accounts.calls == 1
    now[0] = 11
    accounts.inactive.clear()
    assert await cache.is_active("acme") is True
    assert accounts.calls == 2


@pytest.mark.redis
async def test_answers_are_shared_through_redis_and_invalidated_everywhere(
    redis_client: Redis, key_prefix: str
) -> None:
    accounts = Accounts({"acme"})
    guard = RedisGuard("test", timeout=0.5)
    first = TenantStatusCache(accounts, redis=redis_client, guard=guard, key_prefix=key_prefix)
    second = TenantStatusCache(accounts, redis=redis_client, guard=guard, key_prefix=key_prefix)
    assert await first.is_active("acme") is False
    assert await second.is_active("acme") is False  # another instance, same Redis answer
    assert accounts.calls == 1
    assert await redis_client.ttl(key_prefix + "{acme}") > 0
    accounts.inactive.clear()
    await first.invalidate("acme")
    assert await second.is_active("acme") is True
    assert accounts.calls == 2


@pytest.mark.redis
async def test_redis_down_falls_back_to_memory_without_failing(
    redis_server_factory: Callable[[], RedisServer],
) -> None:
    server = redis_server_factory()
    client = Redis.from_url(server.url, socket_timeout=0.2, socket_connect_timeout=0.2)
    try:
        accounts = Accounts({"acme"})
        guard = RedisGuard("test", timeout=0.3, retry_interval=60)
        cache = TenantStatusCache(accounts, redis=client, guard=guard)
        server.stop()
        assert await cache.is_active("acme") is False
        assert await cache.is_active("acme") is False
        assert guard.using_fallback
        assert accounts.calls == 1  # the memory fallback cached the answer
    finally:
        await client.aclose()


def test_a_resolver_must_have_an_async_is_active() -> None:
    with pytest.raises(TypeError):
        TenantStatusCache().use(object())  # type: ignore[arg-type]
