"""ReplayStore: SET NX + TTL on Redis and on Redis Cluster, bounded memory, fallback."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster

from hardenkit import ReplayStore
from hardenkit.signing import ClaimOutcome
from hardenkit.stores import RedisGuard
from tests.support.redis_server import RedisCluster, RedisServer


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def exercise(store: ReplayStore) -> None:
    """The behaviour every backend must show."""
    assert await store.remember("nonce:a", ttl=60) is True
    assert await store.remember("nonce:a", ttl=60) is False
    assert await store.remember("nonce:b", ttl=60) is True

    assert await store.claim("webhook:1", processing_ttl=30) is ClaimOutcome.NEW
    assert await store.claim("webhook:1", processing_ttl=30) is ClaimOutcome.IN_PROGRESS
    await store.complete("webhook:1", ttl=600)
    assert await store.claim("webhook:1", processing_ttl=30) is ClaimOutcome.DUPLICATE

    assert await store.claim("webhook:2", processing_ttl=30) is ClaimOutcome.NEW
    await store.release("webhook:2")
    assert await store.claim("webhook:2", processing_ttl=30) is ClaimOutcome.NEW


async def test_memory_store_remembers_claims_and_releases() -> None:
    await exercise(ReplayStore())


async def test_memory_store_forgets_ids_after_their_ttl() -> None:
    clock = Clock()
    store = ReplayStore(clock=clock)
    assert await store.remember("n", ttl=10)
    clock.now += 9.9
    assert not await store.remember("n", ttl=10)
    clock.now += 10.2
    assert await store.remember("n", ttl=10)
    assert await store.claim("w", processing_ttl=5) is ClaimOutcome.NEW
    clock.now += 6  # the claim of a crashed worker lapses
    assert await store.claim("w", processing_ttl=5) is ClaimOutcome.NEW


async def test_memory_store_is_bounded_and_evicts_the_oldest_first() -> None:
    store = ReplayStore(max_memory_entries=100)
    for index in range(250):
        assert await store.remember(f"n{index}", ttl=3600)
    assert len(store._memory) == 100
    assert await store.remember("n0", ttl=3600)  # evicted, so new again
    assert not await store.remember("n249", ttl=3600)


@pytest.mark.redis
async def test_redis_store_shares_ids_between_two_clients(redis_url: str, key_prefix: str) -> None:
    first_client, second_client = Redis.from_url(redis_url), Redis.from_url(redis_url)
    try:
        first = ReplayStore(first_client, prefix=key_prefix, timeout=1.0)
        second = ReplayStore(second_client, prefix=key_prefix, timeout=1.0)
        await exercise(first)
        assert await second.remember("nonce:a", ttl=60) is False
        assert await second.claim("webhook:1", processing_ttl=30) is ClaimOutcome.DUPLICATE
        assert not first.using_fallback
        ttl = await first_client.pttl(key_prefix + "webhook:1")
        assert 590_000 < ttl <= 600_000
    finally:
        await first_client.aclose()
        await second_client.aclose()


@pytest.mark.redis
async def test_concurrent_claims_on_redis_let_exactly_one_through(
    redis_url: str, key_prefix: str
) -> None:
    clients = [Redis.from_url(redis_url) for _ in range(8)]
    try:
        stores = [ReplayStore(client, prefix=key_prefix, timeout=1.0) for client in clients]
        outcomes = await asyncio.gather(
            *(store.claim("webhook:same", processing_ttl=30) for store in stores)
        )
        assert outcomes.count(ClaimOutcome.NEW) == 1
        assert outcomes.count(ClaimOutcome.IN_PROGRESS) == 7
    finally:
        for client in clients:
            await client.aclose()


@pytest.mark.redis
@pytest.mark.cluster
async def test_replay_store_works_on_redis_cluster(
    redis_cluster: RedisCluster, key_prefix: str
) -> None:
    client = AsyncRedisCluster.from_url(redis_cluster.url)
    try:
        store = ReplayStore(client, prefix=key_prefix, timeout=2.0)
        await exercise(store)
        # Keys land on different slots: every operation touches one key only.
        for index in range(20):
            assert await store.remember(f"nonce:spread:{index}", ttl=60)
            assert not await store.remember(f"nonce:spread:{index}", ttl=60)
        assert not store.using_fallback
    finally:
        await client.aclose()


@pytest.mark.redis
async def test_store_falls_back_to_memory_when_redis_goes_down_and_returns(
    redis_server_factory: Callable[[], RedisServer], key_prefix: str
) -> None:
    server = redis_server_factory()
    client = Redis.from_url(server.url, socket_timeout=0.2, socket_connect_timeout=0.2)
    clock = Clock()
    guard = RedisGuard("replay", timeout=0.5, retry_interval=2.0, clock=clock)
    store = ReplayStore(client, guard=guard, prefix=key_prefix)
    try:
        assert await store.remember("nonce:seen-before", ttl=60)
        server.stop()
        # Redis is gone: answers come from memory at once, and what this process saw
        # before the outage is still known there.
        assert not await store.remember("nonce:seen-before", ttl=60)
        assert store.using_fallback
        assert await store.remember("nonce:during", ttl=60)
        assert not await store.remember("nonce:during", ttl=60)
        assert await store.claim("webhook:x", processing_ttl=30) is ClaimOutcome.NEW
        await store.complete("webhook:x", ttl=600)
        assert await store.claim("webhook:x", processing_ttl=30) is ClaimOutcome.DUPLICATE
        server.start()
        clock.now += 2.0
        assert await store.remember("nonce:after", ttl=60)
        assert not store.using_fallback
        assert await client.exists(key_prefix + "nonce:after") == 1
    finally:
        await client.aclose()


def test_store_rejects_a_non_positive_memory_bound() -> None:
    with pytest.raises(ValueError, match="max_memory_entries"):
        ReplayStore(max_memory_entries=0)
