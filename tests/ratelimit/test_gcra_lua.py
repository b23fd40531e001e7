"""The Lua script and the Python function are the same algorithm, decision for decision."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis import Redis as SyncRedis
from redis.asyncio import Redis

from hardenkit.ratelimit import MemoryStore, Rate, RedisStore
from hardenkit.ratelimit.gcra import gcra
from hardenkit.ratelimit.redis_store import GCRA_SCRIPT

pytestmark = pytest.mark.redis

START_US = 1_700_000_000_000_000


@pytest.fixture(scope="module")
def sync_redis(redis_url: str) -> Iterator[SyncRedis]:
    client = SyncRedis.from_url(redis_url)
    try:
        yield client
    finally:
        client.close()


# Emission intervals of at least half a second keep the real TTL the script sets (in real
# server time) far longer than an example takes, so expiry never interferes with the
# injected clock.
rates = st.builds(
    Rate,
    count=st.integers(1, 20),
    period_seconds=st.integers(10, 3600),
    burst=st.integers(1, 30),
)
steps = st.lists(st.tuples(st.integers(0, 5_000_000), st.integers(1, 8)), min_size=1, max_size=25)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rate=rates, sequence=steps, offset=st.integers(0, 10**12))
def test_python_and_lua_gcra_agree_on_decisions_and_retry_after(
    sync_redis: SyncRedis, rate: Rate, sequence: list[tuple[int, int]], offset: int
) -> None:
    script = sync_redis.register_script(GCRA_SCRIPT)
    key = f"hktest:gcra-lua:{{{uuid.uuid4().hex}}}"
    tat = None
    now = START_US + offset
    for advance, cost in sequence:
        now += advance
        expected = gcra(tat, now, rate.emission_interval_us, rate.tolerance_us, cost)
        reply = script(keys=[key], args=[rate.emission_interval_us, rate.tolerance_us, cost, now])
        assert [int(value) for value in reply] == [
            int(expected.allowed),
            expected.remaining,
            expected.retry_after_us,
            expected.reset_after_us,
        ]
        if expected.allowed:
            tat = expected.new_tat


async def test_memory_and_redis_stores_answer_the_same_sequence_alike(
    redis_client: Redis, key_prefix: str
) -> None:
    randomness = random.Random(4)
    rate = Rate.parse("7/10s burst 4")
    memory = MemoryStore()
    redis_store = RedisStore(redis_client, prefix=key_prefix, timeout=2.0)
    now = START_US
    outcomes = []
    for _ in range(200):
        now += randomness.choice([0, 0, 100_000, 900_000, 1_428_571, 3_000_000])
        cost = randomness.choice([1, 1, 1, 2, 4])
        in_memory = memory.decide_now("k", rate, cost, now=now)
        allowed, remaining, retry_us, reset_us = await redis_store.evaluate(
            redis_store.redis_key("k"), rate, cost, now_us=now
        )
        assert (allowed == 1, remaining, retry_us / 1e6, reset_us / 1e6) == (
            in_memory.allowed,
            in_memory.remaining,
            in_memory.retry_after,
            in_memory.reset_after,
        )
        outcomes.append(in_memory.allowed)
    assert any(outcomes)
    assert not all(outcomes)
