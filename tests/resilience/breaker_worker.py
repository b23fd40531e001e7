"""A separate process using a shared breaker: ``python -m tests.resilience.breaker_worker``.

``open``: fails calls until the shared breaker opens, then prints ``opened``.
``probe``: asks for one call and prints ``refused <seconds>`` or ``allowed``.
"""

from __future__ import annotations

import asyncio
import sys

from redis.asyncio import Redis

from hardenkit.resilience import CircuitBreaker, CircuitOpenError, RedisBreakerStore
from hardenkit.stores import RedisGuard


async def main(url: str, prefix: str, role: str) -> None:
    client = Redis.from_url(url)
    # A patient guard: on a loaded test machine Redis may take longer than 50 ms.
    store = RedisBreakerStore(client, guard=RedisGuard("breakers", timeout=2.0), prefix=prefix)
    breaker = CircuitBreaker(
        "provider", window_size=4, minimum_calls=4, wait_in_open=30.0, store=store
    )

    async def failing() -> None:
        raise ConnectionError("provider down")

    try:
        if role == "open":
            for _ in range(10):
                try:
                    await breaker.call_async(failing)
                except ConnectionError:
                    continue
                except CircuitOpenError:
                    print("opened", flush=True)
                    return
            print("never opened", flush=True)
        else:
            try:
                await breaker.acquire_async()
            except CircuitOpenError as refused:
                print(f"refused {refused.remaining_wait:.1f}", flush=True)
            else:
                print("allowed", flush=True)
    finally:
        await client.aclose()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
