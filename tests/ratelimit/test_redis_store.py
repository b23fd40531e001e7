from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

import pytest
import redis.exceptions
from redis.asyncio import BlockingConnectionPool, Redis

from hardenkit.ratelimit import RateLimiter, RedisStore
from hardenkit.ratelimit.limiter import key_digest
from hardenkit.ratelimit.redis_store import epoch_key
from hardenkit.stores import RedisGuard
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.redis


def store_on(client: Redis, key_prefix: str) -> RedisStore:
    return RedisStore(client, prefix=key_prefix, guard=RedisGuard("test", timeout=2.0))


async def test_two_instances_share_one_limit_through_redis(redis_url: str, key_prefix: str) -> None:
    first_client, second_client = Redis.from_url(redis_url), Redis.from_url(redis_url)
    try:
        first = RateLimiter("5/hour", store=store_on(first_client, key_prefix), name="login")
        second = RateLimiter("5/hour", store=store_on(second_client, key_prefix), name="login")
        assert [(await first.hit("203.0.113.9")).allowed for _ in range(3)] == [True] * 3
        decisions = [await second.hit("203.0.113.9") for _ in range(3)]
        assert [decision.allowed for decision in decisions] == [True, True, False]
        assert all(decision.backend == "redis" for decision in decisions)
        assert decisions[-1].retry_after == pytest.approx(720, abs=1)
    finally:
        await first_client.aclose()
        await second_client.aclose()


async def test_keys_are_hash_tagged_digests_that_expire_by_themselves(
    redis_client: Redis, key_prefix: str
) -> None:
    limiter = RateLimiter("10/minute", store=store_on(redis_client, key_prefix), name="api")
    await limiter.hit("tenant {evil}:with separators")
    keys = {key.decode() async for key in redis_client.scan_iter(match=f"{key_prefix}*")}
    digest = key_digest("tenant {evil}:with separators")
    assert keys == {f"{key_prefix}{{api:{digest}}}", epoch_key(key_prefix)}
    ttl_ms = await redis_client.pttl(f"{key_prefix}{{api:{digest}}}")
    assert 0 < ttl_ms <= 6_000  # one emission interval: the bucket is full again by then
    # One key per prefix, whatever the clients, kept: Redis losing it is the signal.
    assert await redis_client.pttl(epoch_key(key_prefix)) == -1


async def test_concurrent_callers_in_one_process_are_counted_exactly(
    redis_client: Redis, key_prefix: str
) -> None:
    limiter = RateLimiter("10/hour", store=store_on(redis_client, key_prefix), name="burst")
    decisions = await asyncio.gather(*(limiter.hit("one-key") for _ in range(300)))
    assert sum(decision.allowed for decision in decisions) == 10
    assert {decision.backend for decision in decisions} == {"redis"}


async def test_a_flushed_script_cache_is_reloaded_without_an_error(
    redis_server_factory: Callable[[], RedisServer],
) -> None:
    server = redis_server_factory()
    client = Redis.from_url(server.url)
    try:
        limiter = RateLimiter("3/hour", store=store_on(client, "hk:"), name="noscript")
        assert (await limiter.hit("k")).allowed
        await client.script_flush()
        decisions = [await limiter.hit("k") for _ in range(3)]
        assert [decision.allowed for decision in decisions] == [True, True, False]
        assert {decision.backend for decision in decisions} == {"redis"}
        # Concurrent callers after another flush go through the pipelined path.
        await client.script_flush()
        await client.delete("hk:{noscript:" + key_digest("k") + "}")
        results = await asyncio.gather(*(limiter.hit("k") for _ in range(10)))
        assert sum(decision.allowed for decision in results) == 3
        assert {decision.backend for decision in results} == {"redis"}
    finally:
        await client.aclose()


async def test_redis_time_decides_so_application_clocks_do_not_matter(
    redis_client: Redis, key_prefix: str
) -> None:
    store = store_on(redis_client, key_prefix)
    limiter = RateLimiter("1/hour", store=store, name="clock")
    await limiter.hit("k")
    stored_tat = int(await redis_client.get(store.redis_key(f"clock:{key_digest('k')}")))
    seconds, microseconds = await redis_client.time()
    server_now = seconds * 1_000_000 + microseconds
    assert 0 < stored_tat - server_now <= 3_600_000_000


async def test_a_reply_arriving_after_the_timeout_is_never_read_as_a_later_decision(
    redis_server_factory: Callable[[], RedisServer],
) -> None:
    server = redis_server_factory()
    assert server.process is not None
    client = Redis.from_url(server.url, socket_timeout=2.0, socket_connect_timeout=2.0)
    guard = RedisGuard("stale", timeout=0.1, retry_interval=0.2)
    store = RedisStore(client, guard=guard)
    stalled = RateLimiter("100/hour", store=store, name="stalled")
    later = RateLimiter("5/hour", store=store, name="later")
    try:
        assert (await later.hit("warm")).backend == "redis"
        server.process.send_signal(signal.SIGSTOP)
        try:
            decision = await stalled.hit("k")  # sent, then Redis freezes before replying
            assert decision.backend == "memory"
        finally:
            server.process.send_signal(signal.SIGCONT)
        # One timeout is not an outage: that call alone was answered by memory.
        assert not guard.using_fallback
        assert guard.single_fallbacks == 1
        decisions = [await later.hit("fresh") for _ in range(3)]
        assert [(d.backend, d.remaining) for d in decisions] == [
            ("redis", 4),
            ("redis", 3),
            ("redis", 2),
        ]
    finally:
        await client.aclose()


async def connected_clients(admin: Redis) -> int:
    return int((await admin.info("clients"))["connected_clients"])


async def test_decisions_one_at_a_time_share_one_held_connection(
    redis_server_factory: Callable[[], RedisServer],
) -> None:
    server = redis_server_factory()
    admin, client = Redis.from_url(server.url), Redis.from_url(server.url, socket_timeout=2.0)
    try:
        before = await connected_clients(admin)
        limiter = RateLimiter("1000/hour", store=store_on(client, "hk:"), name="held")
        decisions = [await limiter.hit(f"caller-{index}") for index in range(50)]
        assert {decision.backend for decision in decisions} == {"redis"}
        assert await connected_clients(admin) == before + 1
    finally:
        await client.aclose()
        await admin.aclose()


async def test_closing_the_client_closes_the_held_connection_and_decisions_reconnect(
    redis_server_factory: Callable[[], RedisServer],
) -> None:
    server = redis_server_factory()
    admin, client = Redis.from_url(server.url), Redis.from_url(server.url)
    try:
        limiter = RateLimiter("5/hour", store=store_on(client, "hk:"), name="reopen")
        assert (await limiter.hit("k")).remaining == 4
        open_with_store = await connected_clients(admin)
        await client.aclose()
        assert await connected_clients(admin) == open_with_store - 1
        decision = await limiter.hit("k")
        assert (decision.backend, decision.remaining) == ("redis", 3)
    finally:
        await client.aclose()
        await admin.aclose()


async def test_the_only_connection_of_a_pool_is_never_held(redis_url: str, key_prefix: str) -> None:
    pool = BlockingConnectionPool.from_url(redis_url, max_connections=1, timeout=0.5)
    client = Redis(connection_pool=pool)
    try:
        limiter = RateLimiter("10/hour", store=store_on(client, key_prefix), name="single")
        assert (await limiter.hit("k")).backend == "redis"
        # The app's own commands still get the pool's one connection at once.
        assert await client.set(f"{key_prefix}other", "value")
        assert (await limiter.hit("k")).remaining == 8
    finally:
        await client.aclose()
        await pool.disconnect()  # a pool passed in is its owner's to close


async def test_aclose_gives_the_held_connection_back_with_its_timeout(
    redis_url: str, key_prefix: str
) -> None:
    pool = BlockingConnectionPool.from_url(
        redis_url, max_connections=2, timeout=0.2, socket_timeout=3.0
    )
    client = Redis(connection_pool=pool)
    store = store_on(client, key_prefix)
    try:
        assert (await RateLimiter("10/hour", store=store, name="back").hit("k")).allowed
        first = await pool.get_connection()
        with pytest.raises(redis.exceptions.ConnectionError):
            await pool.get_connection()  # the store holds the other one
        await store.aclose()
        second = await pool.get_connection()
        assert {first.socket_timeout, second.socket_timeout} == {3.0}
        await pool.release(first)
        await pool.release(second)
    finally:
        await client.aclose()
        await pool.disconnect()  # a pool passed in is its owner's to close


@pytest.mark.parametrize("encoding", ["utf-8", "latin-1"])
def test_the_runner_encodes_a_decision_exactly_as_redis_py_would(encoding: str) -> None:
    from redis.asyncio.connection import Connection

    from hardenkit.ratelimit._pipelining import ScriptRunner

    runner = ScriptRunner(Redis(encoding=encoding), "return 1", "a" * 40, batch_timeout=1.0)
    runner._encoding = encoding  # as taken from the held connection
    keys = ("hk:rl:{api:préfixe}", "hk:rl:{api:préfixe}:reserved")
    args = (60, 60_000_000, 60, "0123abcd", 4, 10_000_000)
    expected = b"".join(
        Connection(encoding=encoding).pack_command("EVALSHA", "a" * 40, 2, *keys, *args)
    )
    assert runner._packed_evalsha(keys, args) == expected
    assert runner._packed_evalsha(keys, args) == expected  # the arguments' encoding kept
