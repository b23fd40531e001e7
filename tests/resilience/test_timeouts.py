"""Per-attempt timeouts, deadlines and the bulkhead, sync and async."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from hardenkit.context import remaining_time
from hardenkit.resilience import (
    AttemptTimeoutError,
    Bulkhead,
    BulkheadFullError,
    ResilienceRegistry,
    deadline,
    resilient,
)


async def test_async_timeout_cancels_the_call_and_leaves_no_pending_task(
    registry: ResilienceRegistry,
) -> None:
    cancelled = asyncio.Event()

    async def hang() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    tasks_before = asyncio.all_tasks()
    started = time.monotonic()
    with pytest.raises(AttemptTimeoutError):
        await resilient("hang", registry=registry, timeout=0.05, attempts=1).call_async(hang)
    assert time.monotonic() - started < 1.0
    assert cancelled.is_set()
    assert asyncio.all_tasks() == tasks_before


async def test_a_timed_out_attempt_is_retried_and_counts_as_a_breaker_failure(
    registry: ResilienceRegistry, waits: list[float]
) -> None:
    calls = 0

    async def first_hangs() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.sleep(30)
        return "ok"

    policy = resilient("sometimes-slow", registry=registry, timeout=0.05)
    assert await policy.call_async(first_hangs) == "ok"
    assert calls == 2
    assert policy.breaker is not None
    assert policy.breaker.snapshot()["failure_rate"] == 50.0


async def test_the_attempt_timeout_is_clamped_to_the_request_deadline(
    registry: ResilienceRegistry,
) -> None:
    async def hang() -> None:
        await asyncio.sleep(30)

    started = time.monotonic()
    async with deadline(0.05):
        with pytest.raises(AttemptTimeoutError) as timed_out:
            await resilient("clamped", registry=registry, timeout=10).call_async(hang)
    assert timed_out.value.timeout <= 0.05
    assert time.monotonic() - started < 1.0


def test_a_sync_attempt_publishes_its_timeout_as_the_deadline_for_the_client(
    registry: ResilienceRegistry,
) -> None:
    seen: list[float | None] = []
    resilient("sync", registry=registry, timeout=2.0).call(lambda: seen.append(remaining_time()))
    assert seen[0] is not None
    assert 1.5 < seen[0] <= 2.0
    assert remaining_time() is None


def test_a_sync_attempt_sees_the_tighter_of_its_timeout_and_the_deadline(
    registry: ResilienceRegistry,
) -> None:
    seen: list[float | None] = []
    with deadline(0.5):
        resilient("sync", registry=registry, timeout=5.0).call(
            lambda: seen.append(remaining_time())
        )
    assert seen[0] is not None
    assert seen[0] <= 0.5


def test_deadline_never_widens_an_outer_deadline() -> None:
    with deadline(1.0), deadline(60.0) as inner:
        assert inner.remaining <= 1.0
    assert remaining_time() is None


def test_bulkhead_refuses_at_once_when_full_without_a_queue() -> None:
    bulkhead = Bulkhead("db", max_concurrent=1)
    with bulkhead, pytest.raises(BulkheadFullError) as refused, bulkhead:
        pass
    assert refused.value.status == 503
    with bulkhead:
        assert bulkhead.active == 1
    assert bulkhead.active == 0


def test_bulkhead_waiters_get_the_freed_slot_in_order_across_threads() -> None:
    bulkhead = Bulkhead("db", max_concurrent=1, max_waiting=2, max_wait=5.0)
    order: list[str] = []
    bulkhead.acquire()

    def waiter(label: str) -> None:
        with bulkhead:
            order.append(label)

    first = threading.Thread(target=waiter, args=("first",))
    first.start()
    while bulkhead.waiting < 1:
        time.sleep(0.001)
    second = threading.Thread(target=waiter, args=("second",))
    second.start()
    while bulkhead.waiting < 2:
        time.sleep(0.001)
    with pytest.raises(BulkheadFullError):
        bulkhead.acquire()  # the queue is full
    bulkhead.release()
    first.join(5)
    second.join(5)
    assert order == ["first", "second"]
    assert bulkhead.active == 0


async def test_async_bulkhead_wait_ends_with_a_refusal_after_max_wait() -> None:
    bulkhead = Bulkhead("llm", max_concurrent=1, max_waiting=1, max_wait=0.05)
    await bulkhead.acquire_async()
    with pytest.raises(BulkheadFullError):
        await bulkhead.acquire_async()
    assert bulkhead.waiting == 0
    bulkhead.release()
    await bulkhead.acquire_async()
    bulkhead.release()


async def test_resilient_limits_concurrency_per_name(registry: ResilienceRegistry) -> None:
    gate = asyncio.Event()
    in_flight = 0
    peak = 0

    async def work() -> None:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await gate.wait()
        in_flight -= 1

    policy = resilient("llm", registry=registry, bulkhead=2, attempts=1, timeout=None)
    tasks = [asyncio.ensure_future(policy.call_async(work)) for _ in range(3)]
    await asyncio.sleep(0.01)
    gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert peak == 2
    assert sum(isinstance(r, BulkheadFullError) for r in results) == 1


async def test_concurrent_attempts_each_time_out_at_their_own_deadline(
    registry: ResilienceRegistry,
) -> None:
    async def sleeper(seconds: float) -> str:
        await asyncio.sleep(seconds)
        return "done"

    long_budget = resilient("long", registry=registry, timeout=0.3, attempts=1)
    short_budget = resilient("short", registry=registry, timeout=0.05, attempts=1)
    started = time.monotonic()
    results = await asyncio.gather(
        long_budget.call_async(sleeper, 0.1),  # armed first, finishes in time
        short_budget.call_async(sleeper, 5),  # a later, earlier deadline re-arms the timer
        long_budget.call_async(sleeper, 5),
        return_exceptions=True,
    )
    elapsed = time.monotonic() - started
    assert results[0] == "done"
    assert isinstance(results[1], AttemptTimeoutError)
    assert isinstance(results[2], AttemptTimeoutError)
    assert results[2].timeout == 0.3
    assert elapsed < 2.0


async def test_a_cancellation_from_outside_is_not_mistaken_for_a_timeout(
    registry: ResilienceRegistry,
) -> None:
    started = asyncio.Event()

    async def hang() -> None:
        started.set()
        await asyncio.sleep(30)

    task = asyncio.ensure_future(
        resilient("outer", registry=registry, timeout=10, attempts=1).call_async(hang)
    )
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_callee_that_swallows_the_cancellation_leaves_the_task_clean(
    registry: ResilienceRegistry,
) -> None:
    async def stubborn() -> str:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            return "swallowed"
        return "slept"

    policy = resilient("stubborn", registry=registry, timeout=0.05, attempts=1)
    assert await policy.call_async(stubborn) == "swallowed"
    current = asyncio.current_task()
    assert current is not None
    assert current.cancelling() == 0
    await asyncio.sleep(0.01)  # and no stray cancellation arrives later
