"""Outbound resilience on a call that succeeds, against tenacity and pybreaker.

``resilient`` (retry + circuit breaker + per-attempt timeout, retry budget on) is compared
with tenacity's ``@retry`` alone, and the circuit breaker alone with pybreaker's ``call``.
Figures are overheads: the cost of the bare call is subtracted from each subject.

pybreaker has no asyncio support without tornado, so the async breaker row compares
against ``await breaker.call(coroutine_function)``: pybreaker's bookkeeping around creating
the coroutine, which is what code using it from asyncio pays.
"""

from __future__ import annotations

import pybreaker
from tenacity import AsyncRetrying, Retrying, stop_after_attempt, wait_random_exponential

from benchmarks._harness import Row, compare_async, compare_sync
from hardenkit.resilience import CircuitBreaker, ResilienceRegistry, resilient


def _answer() -> int:
    return 42


async def _answer_async() -> int:
    return 42


def _tenacity() -> Retrying:
    return Retrying(stop=stop_after_attempt(3), wait=wait_random_exponential(0.2, max=5.0))


def run(quick: bool) -> list[Row]:
    number, repeat = (5_000, 5) if quick else (20_000, 9)
    registry = ResilienceRegistry()
    ours = resilient("bench", timeout=10.0, attempts=3, registry=registry)
    sync_ours = ours(_answer)
    async_ours = ours(_answer_async)
    # What @retry(stop=..., wait=...) builds, spelled out so the types are known.
    sync_tenacity = _tenacity().wraps(_answer)
    async_tenacity = AsyncRetrying(
        stop=stop_after_attempt(3), wait=wait_random_exponential(0.2, max=5.0)
    ).wraps(_answer_async)

    breaker = CircuitBreaker("bench-breaker")
    peer_breaker = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=30)

    rows: list[Row] = []

    times = compare_sync(
        {
            "bare": _answer,
            "hardenkit": sync_ours,
            "tenacity": sync_tenacity,
            "breaker": lambda: breaker.call(_answer),
            "pybreaker": lambda: peer_breaker.call(_answer),
        },
        number=number,
        repeat=repeat,
    )
    bare = times["bare"]
    rows.append(
        Row(
            piece="resilience",
            figure="resilient (retry + breaker + timeout), success, sync",
            ours=(times["hardenkit"] - bare) * 1e6,
            peer_name="tenacity @retry",
            peer=(times["tenacity"] - bare) * 1e6,
            max_ratio=0.3,
        )
    )
    rows.append(
        Row(
            piece="resilience",
            figure="circuit breaker alone, success, sync",
            ours=(times["breaker"] - bare) * 1e6,
            peer_name="pybreaker call",
            peer=(times["pybreaker"] - bare) * 1e6,
            max_ratio=0.5,
        )
    )

    async def breaker_async() -> int:
        return await breaker.call_async(_answer_async)

    async def pybreaker_async() -> int:
        return await peer_breaker.call(_answer_async)

    times = compare_async(
        {
            "bare": _answer_async,
            "hardenkit": async_ours,
            "tenacity": async_tenacity,
            "breaker": breaker_async,
            "pybreaker": pybreaker_async,
        },
        number=number,
        repeat=repeat,
    )
    bare = times["bare"]
    rows.append(
        Row(
            piece="resilience",
            figure="resilient (retry + breaker + timeout), success, async",
            ours=(times["hardenkit"] - bare) * 1e6,
            peer_name="tenacity @retry",
            peer=(times["tenacity"] - bare) * 1e6,
            max_ratio=0.3,
        )
    )
    rows.append(
        Row(
            piece="resilience",
            figure="circuit breaker alone, success, async",
            ours=(times["breaker"] - bare) * 1e6,
            peer_name="pybreaker call (coroutine awaited)",
            peer=(times["pybreaker"] - bare) * 1e6,
            max_ratio=0.5,
        )
    )
    return rows
