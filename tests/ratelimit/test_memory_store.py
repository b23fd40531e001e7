from __future__ import annotations

import asyncio

import pytest
from structlog.testing import capture_logs

from hardenkit.ratelimit import MemoryStore, Rate, RateLimiter
from hardenkit.ratelimit import limiter as limiter_module


def test_a_flood_of_distinct_keys_cannot_grow_the_store_past_its_cap() -> None:
    store = MemoryStore(max_keys=1_000)
    rate = Rate.parse("5/minute")
    with capture_logs() as logs:
        for index in range(20_000):
            store.decide_now(f"flood:{index}", rate, 1)
    assert len(store) == 1_000
    assert store.evicted_live_keys > 0
    assert any(entry["event"] == "ratelimit_memory_store_full" for entry in logs)
    # Logged on powers of two, not once per eviction.
    assert sum(entry["event"] == "ratelimit_memory_store_full" for entry in logs) < 20


def test_the_least_recently_used_key_goes_first_and_a_refused_client_counts_as_used() -> None:
    rate = Rate.parse("1/hour")
    store = MemoryStore(max_keys=3)
    now = 10**12
    store.decide_now("attacker", rate, 1, now=now)
    store.decide_now("b", rate, 1, now=now)
    store.decide_now("c", rate, 1, now=now)
    assert not store.decide_now("attacker", rate, 1, now=now).allowed  # touched: now newest
    store.decide_now("d", rate, 1, now=now)
    assert "attacker" in store
    assert "b" not in store
    assert not store.decide_now("attacker", rate, 1, now=now).allowed


async def test_concurrent_hits_on_one_event_loop_are_exact() -> None:
    limiter = RateLimiter("50/hour", store=MemoryStore(), name="concurrent")
    decisions = await asyncio.gather(*(limiter.hit("k") for _ in range(500)))
    assert sum(decision.allowed for decision in decisions) == 50


async def test_hit_refuses_a_cost_that_could_never_be_granted() -> None:
    limiter = RateLimiter("10/s burst 5", name="costly")
    with pytest.raises(ValueError, match="cost"):
        await limiter.hit("k", cost=6)
    with pytest.raises(ValueError, match="cost"):
        await limiter.hit("k", cost=0)
    decision = await limiter.hit("k", cost=5)
    assert decision.allowed
    assert decision.remaining == 0


async def test_limiters_with_different_names_do_not_share_keys() -> None:
    store = MemoryStore()
    first = RateLimiter("1/hour", store=store, name="first")
    second = RateLimiter("1/hour", store=store, name="second")
    assert (await first.hit("same")).allowed
    assert (await second.hit("same")).allowed
    assert not (await first.hit("same")).allowed


async def test_a_flood_of_distinct_callers_keeps_the_limiter_small_and_every_count_exact() -> None:
    limiter = RateLimiter("1/hour", store=MemoryStore(), name="flood")
    bound = limiter_module._MAX_CACHED_KEYS
    assert (await limiter.hit("first")).allowed
    for index in range(bound * 2 + 10):
        await limiter.hit(f"caller:{index}")
    # The storage keys it remembers stay bounded, and a caller it forgot is still
    # counted against the same bucket: "first" has used its one request of the hour.
    assert len(limiter._storage_keys) <= bound
    assert not (await limiter.hit("first")).allowed
