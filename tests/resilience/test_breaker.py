"""The circuit breaker as callers use it: decorators, events, exception rules, operators."""

from __future__ import annotations

import asyncio
import threading

import pytest
import structlog

from hardenkit.resilience import (
    BreakerState,
    CircuitBreaker,
    CircuitOpenError,
    StateChange,
)
from tests.resilience.conftest import FakeClock


def failing() -> None:
    raise ConnectionError("down")


def small_breaker(clock: FakeClock, **options: object) -> CircuitBreaker:
    settings: dict[str, object] = {
        "window_size": 4,
        "minimum_calls": 4,
        "failure_rate_threshold": 50.0,
        "wait_in_open": 10.0,
        "permitted_calls_in_half_open": 1,
        "clock": clock,
    }
    settings.update(options)
    return CircuitBreaker("payments", **settings)  # type: ignore[arg-type]


def trip(breaker: CircuitBreaker) -> None:
    for _ in range(breaker.config.minimum_calls):
        with pytest.raises(ConnectionError):
            breaker.call(failing)


def test_breaker_opens_after_the_failure_rate_and_refuses_with_the_remaining_wait(
    clock: FakeClock,
) -> None:
    breaker = small_breaker(clock)
    trip(breaker)
    assert breaker.state is BreakerState.OPEN
    clock.advance(4.0)
    with pytest.raises(CircuitOpenError) as refused:
        breaker.call(lambda: "never called")
    assert refused.value.remaining_wait == pytest.approx(6.0)
    assert refused.value.status == 503
    assert refused.value.headers == {"Retry-After": "6"}
    assert "payments" not in (refused.value.detail or "")


def test_rates_are_not_judged_before_the_minimum_number_of_calls(clock: FakeClock) -> None:
    breaker = small_breaker(clock, minimum_calls=4, window_size=10)
    for _ in range(3):
        with pytest.raises(ConnectionError):
            breaker.call(failing)
    assert breaker.state is BreakerState.CLOSED


def test_a_successful_trial_closes_the_breaker_and_a_failed_one_reopens_it_for_longer(
    clock: FakeClock,
) -> None:
    breaker = small_breaker(clock, wait_multiplier=2.0, max_wait_in_open=15.0)
    trip(breaker)
    clock.advance(10.0)
    with pytest.raises(ConnectionError):
        breaker.call(failing)  # the trial fails
    assert breaker.state is BreakerState.OPEN
    assert breaker.remaining_wait() == pytest.approx(15.0)  # 10 × 2, capped at 15
    clock.advance(15.0)
    assert breaker.call(lambda: "ok") == "ok"
    assert breaker.state is BreakerState.CLOSED


def test_half_open_lets_only_the_permitted_trial_calls_through(clock: FakeClock) -> None:
    breaker = small_breaker(clock, permitted_calls_in_half_open=2)
    trip(breaker)
    clock.advance(10.0)
    breaker.acquire()
    breaker.acquire()
    with pytest.raises(CircuitOpenError):
        breaker.acquire()


def test_ignored_exceptions_count_as_nothing_and_unrecorded_ones_as_successes(
    clock: FakeClock,
) -> None:
    breaker = small_breaker(
        clock, record_exceptions=(ConnectionError,), ignore_exceptions=(KeyError,)
    )
    for error in (KeyError("x"), ValueError("bad input")) * 4:
        with pytest.raises(type(error)):
            breaker.call(_raiser(error))
    assert breaker.state is BreakerState.CLOSED
    assert breaker.snapshot()["calls"] == 4  # the ValueErrors only
    assert breaker.snapshot()["failure_rate"] == 0.0


def _raiser(error: BaseException):  # type: ignore[no-untyped-def]
    def raise_it() -> None:
        raise error

    return raise_it


def test_a_result_can_count_as_a_failure(clock: FakeClock) -> None:
    breaker = small_breaker(clock, failure_result=lambda status: status >= 500)
    for _ in range(4):
        assert breaker.call(lambda: 503) == 503
    assert breaker.state is BreakerState.OPEN


def test_slow_calls_open_the_breaker_at_the_slow_call_rate(clock: FakeClock) -> None:
    breaker = small_breaker(clock, slow_call_duration=1.0, slow_call_rate_threshold=50.0)

    def slow() -> str:
        clock.advance(2.0)
        return "late"

    for _ in range(4):
        breaker.call(slow)
    assert breaker.state is BreakerState.OPEN


def test_time_window_forgets_failures_older_than_the_window(clock: FakeClock) -> None:
    breaker = small_breaker(clock, window="time", window_size=5, minimum_calls=3)
    for _ in range(2):
        with pytest.raises(ConnectionError):
            breaker.call(failing)
    clock.advance(6.0)
    with pytest.raises(ConnectionError):
        breaker.call(failing)
    assert breaker.state is BreakerState.CLOSED
    assert breaker.snapshot()["calls"] == 1


def test_operators_can_force_open_disable_and_reset(clock: FakeClock) -> None:
    breaker = small_breaker(clock)
    breaker.force_open()
    with pytest.raises(CircuitOpenError) as refused:
        breaker.call(lambda: None)
    assert refused.value.remaining_wait is None
    clock.advance(1000.0)
    assert breaker.state is BreakerState.FORCED_OPEN
    breaker.disable()
    trip(breaker)
    assert breaker.state is BreakerState.DISABLED
    breaker.reset()
    assert breaker.state is BreakerState.CLOSED


def test_every_transition_reaches_callbacks_and_the_audit_log(clock: FakeClock) -> None:
    seen: list[StateChange] = []

    def broken_listener(change: StateChange) -> None:
        raise RuntimeError("an observer must not break the call")

    breaker = small_breaker(clock, on_state_change=[broken_listener, seen.append])
    with structlog.testing.capture_logs() as logs:
        trip(breaker)
        clock.advance(10.0)
        breaker.call(lambda: None)
    assert [(c.previous, c.current, c.reason) for c in seen] == [
        (BreakerState.CLOSED, BreakerState.OPEN, "failure_rate"),
        (BreakerState.OPEN, BreakerState.HALF_OPEN, "wait_elapsed"),
        (BreakerState.HALF_OPEN, BreakerState.CLOSED, "trial_succeeded"),
    ]
    assert seen[0].failure_rate == 100.0
    audits = [line for line in logs if line.get("event_type") == "breaker_state"]
    assert [line["outcome"] for line in audits] == ["open", "half_open", "closed"]
    assert audits[0]["details"]["breaker"] == "payments"


async def test_async_callables_go_through_the_same_breaker(clock: FakeClock) -> None:
    breaker = small_breaker(clock)

    @breaker
    async def fetch(fail: bool) -> str:
        await asyncio.sleep(0)
        if fail:
            raise ConnectionError("down")
        return "ok"

    assert await fetch(False) == "ok"
    for _ in range(3):  # 3 failures in 4 calls: 75 % >= 50 %
        with pytest.raises(ConnectionError):
            await fetch(True)
    with pytest.raises(CircuitOpenError):
        await fetch(False)


async def test_a_cancelled_trial_gives_its_permission_back(clock: FakeClock) -> None:
    breaker = small_breaker(clock)
    trip(breaker)
    clock.advance(10.0)
    started = asyncio.Event()

    async def hang() -> None:
        started.set()
        await asyncio.sleep(10)

    task = asyncio.ensure_future(breaker.call_async(hang))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await breaker.call_async(asyncio.sleep, 0) is None
    assert breaker.state is BreakerState.CLOSED


def test_concurrent_threads_keep_the_counts_exact(clock: FakeClock) -> None:
    breaker = CircuitBreaker("threads", window_size=10_000, minimum_calls=10_000, clock=clock)

    def work() -> None:
        for index in range(500):
            if index % 2:
                breaker.record_failure(0.0)
            else:
                breaker.record_success(0.0)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert breaker.snapshot()["calls"] == 4000
    assert breaker.snapshot()["failure_rate"] == 50.0


def test_invalid_configuration_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="failure_rate_threshold"):
        CircuitBreaker("x", failure_rate_threshold=0)
    with pytest.raises(ValueError, match="max_wait_in_open"):
        CircuitBreaker("x", wait_in_open=10, max_wait_in_open=5)


def test_a_measured_block_records_its_duration_and_outcome() -> None:
    clock = FakeClock()
    breaker = small_breaker(clock, slow_call_duration=1.0, slow_call_rate_threshold=50.0)
    for _ in range(4):
        with breaker.measure() as call:
            clock.advance(2.0)  # slow, though it answered
            call.result = "ok"
    assert breaker.state is BreakerState.OPEN
    assert breaker.snapshot()["state"] == "open"
    with pytest.raises(CircuitOpenError), breaker.measure():
        pytest.fail("an open breaker must refuse before the block runs")


def test_a_measured_block_counts_its_exception_and_lets_it_go_on() -> None:
    breaker = small_breaker(FakeClock())
    for _ in range(4):
        with pytest.raises(ConnectionError), breaker.measure():
            failing()
    assert breaker.state is BreakerState.OPEN


async def test_an_async_measured_block_judges_a_failed_result() -> None:
    breaker = small_breaker(FakeClock(), failure_result=lambda status: status >= 500)
    for _ in range(4):
        async with breaker.measure() as call:
            call.result = 503
    assert breaker.state is BreakerState.OPEN
