"""One worker process of the exactness test: 32 concurrent callers against one key.

Started with the ``spawn`` method, so it imports only what it needs. Every scenario begins
at a barrier shared by all workers, so the processes really hit Redis at the same time.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from hardenkit.ratelimit import RateLimiter, RedisStore
from hardenkit.stores import RedisGuard

CALLERS = 32


def run(
    url: str, cluster: bool, scenarios: list[dict[str, Any]], barrier: Any, results: Any
) -> None:
    """Run each scenario after the barrier; put one result dict per scenario on ``results``."""
    asyncio.run(_main(url, cluster, scenarios, barrier, results))


async def _main(
    url: str, cluster: bool, scenarios: list[dict[str, Any]], barrier: Any, results: Any
) -> None:
    client: Redis | RedisCluster = RedisCluster.from_url(url) if cluster else Redis.from_url(url)
    # A generous timeout: this test is about Redis's answers, so the fallback must not
    # answer any decision (checked below).
    guard = RedisGuard("exactness", timeout=10.0, retry_interval=60.0)
    store = RedisStore(client, guard=guard, prefix="hktest:exact:")
    await client.ping()
    try:
        for index, scenario in enumerate(scenarios):
            limiter = RateLimiter(scenario["rate"], store=store, name="exact")
            await asyncio.to_thread(barrier.wait, 60)
            outcome = await _scenario(limiter, scenario)
            outcome["fallbacks"] = guard.fallback_activations
            outcome["scenario"] = index
            results.put(outcome)
    finally:
        await client.aclose()


async def _scenario(limiter: RateLimiter, scenario: dict[str, Any]) -> dict[str, Any]:
    key = scenario["key"]
    calls_per_caller = scenario.get("calls_per_caller")
    run_for = scenario.get("run_for")
    backends: set[str] = set()
    allowed = 0
    first_start = float("inf")
    last_end = 0.0

    async def caller(seed: int) -> None:
        nonlocal allowed, first_start, last_end
        randomness = random.Random(seed)
        deadline = time.time() + (run_for or 30.0)
        calls = 0
        while time.time() < deadline and (calls_per_caller is None or calls < calls_per_caller):
            started = time.time()
            decision = await limiter.hit(key)
            ended = time.time()
            first_start = min(first_start, started)
            last_end = max(last_end, ended)
            backends.add(decision.backend)
            allowed += decision.allowed
            calls += 1
            if run_for is not None:
                await asyncio.sleep(randomness.uniform(0, 0.01))

    await asyncio.gather(*(caller(index) for index in range(CALLERS)))
    return {
        "allowed": allowed,
        "first_start": first_start,
        "last_end": last_end,
        "backends": sorted(backends),
    }
