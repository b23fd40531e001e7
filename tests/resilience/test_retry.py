"""Retries: what is retried, how long to wait, and what ends the retries early."""

from __future__ import annotations

import email.utils
import time
from types import ModuleType

import httpx
import httpx2
import pytest
from hypothesis import given
from hypothesis import strategies as st
from tenacity import retry_if_exception_type, stop_after_delay, wait_fixed

from hardenkit.resilience import (
    CircuitBreaker,
    CircuitOpenError,
    DeadlineExceededError,
    ResilienceRegistry,
    Retry,
    RetryBudget,
    deadline,
    is_transient_error,
    parse_retry_after,
    resilient,
)
from tests.resilience.conftest import FakeClock


class Upstream:
    """Answers with the given outcomes in order, counting calls."""

    def __init__(self, *outcomes: object) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0

    def _next(self) -> object:
        outcome = self.outcomes[min(self.calls, len(self.outcomes) - 1)]
        self.calls += 1
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def __call__(self) -> object:
        return self._next()

    async def call_async(self) -> object:
        return self._next()


def response(status: int, **headers: str) -> httpx.Response:
    return httpx.Response(status, headers=headers)


def policy(registry: ResilienceRegistry, **options: object):  # type: ignore[no-untyped-def]
    options.setdefault("breaker", False)
    options.setdefault("budget", False)
    return resilient("upstream", registry=registry, **options)  # type: ignore[arg-type]


def test_transient_errors_are_retried_with_jittered_exponential_backoff(
    registry: ResilienceRegistry, waits: list[float]
) -> None:
    upstream = Upstream(ConnectionError(), TimeoutError(), "ok")
    assert policy(registry).call(upstream) == "ok"
    assert upstream.calls == 3
    assert len(waits) == 2
    assert 0 <= waits[0] <= 0.2 * 2
    assert 0 <= waits[1] <= 0.2 * 4


@pytest.mark.parametrize("error", [ValueError("bad"), KeyError("x")])
def test_errors_that_are_not_transient_are_raised_at_once(
    registry: ResilienceRegistry, waits: list[float], error: Exception
) -> None:
    upstream = Upstream(error, "ok")
    with pytest.raises(type(error)):
        policy(registry).call(upstream)
    assert upstream.calls == 1


@pytest.mark.parametrize(
    ("status", "retried"),
    [
        (400, False),
        (401, False),
        (404, False),
        (409, False),
        (422, False),
        (500, False),
        (408, True),
        (429, True),
        (502, True),
        (503, True),
        (504, True),
    ],
)
def test_only_408_429_502_503_504_responses_are_retried(
    registry: ResilienceRegistry, waits: list[float], status: int, retried: bool
) -> None:
    upstream = Upstream(response(status), response(200))
    result = policy(registry).call(upstream)
    assert upstream.calls == (2 if retried else 1)
    assert result.status_code == (200 if retried else status)


def test_the_last_retryable_response_is_returned_when_attempts_run_out(
    registry: ResilienceRegistry, waits: list[float]
) -> None:
    upstream = Upstream(response(503))
    assert policy(registry, attempts=3).call(upstream).status_code == 503
    assert upstream.calls == 3


def test_retry_after_seconds_is_waited_instead_of_a_shorter_backoff(
    registry: ResilienceRegistry, waits: list[float]
) -> None:
    upstream = Upstream(response(429, **{"Retry-After": "3"}), response(200))
    assert policy(registry).call(upstream).status_code == 200
    assert waits == [3.0]


def test_retry_after_as_an_http_date_is_honoured(
    registry: ResilienceRegistry, waits: list[float]
) -> None:
    when = email.utils.formatdate(time.time() + 5, usegmt=True)
    upstream = Upstream(response(503, **{"Retry-After": when}), response(200))
    assert policy(registry).call(upstream).status_code == 200
    assert len(waits) == 1
    assert 3.5 <= waits[0] <= 5.0


def test_retry_after_longer_than_the_cap_ends_the_retries(
    registry: ResilienceRegistry, waits: list[float]
) -> None:
    upstream = Upstream(response(429, **{"Retry-After": "120"}), response(200))
    result = policy(registry, retry=Retry(max_retry_after=30.0)).call(upstream)
    assert result.status_code == 429
    assert upstream.calls == 1
    assert waits == []


def test_retry_after_that_would_pass_the_total_cap_ends_the_retries(
    registry: ResilienceRegistry, waits: list[float]
) -> None:
    upstream = Upstream(response(503, **{"Retry-After": "8"}), response(200))
    result = policy(registry, retry=Retry(max_total=5.0)).call(upstream)
    assert result.status_code == 503
    assert waits == []


def test_retry_after_on_an_exception_is_honoured(
    registry: ResilienceRegistry, waits: list[float]
) -> None:
    class Throttled(Exception):
        status_code = 429
        retry_after = 2.5

    upstream = Upstream(Throttled(), "ok")
    assert policy(registry).call(upstream) == "ok"
    assert waits == [2.5]


def test_an_exhausted_budget_stops_retries(waits: list[float], clock: FakeClock) -> None:
    registry = ResilienceRegistry()
    budget = RetryBudget(ratio=0.0, minimum_retries=2, window=10, clock=clock)
    failing = resilient("upstream", registry=registry, breaker=False, budget=budget, attempts=3)
    first = Upstream(ConnectionError())
    with pytest.raises(ConnectionError):
        failing.call(first)
    assert first.calls == 3  # two retries: the whole budget
    second = Upstream(ConnectionError())
    with pytest.raises(ConnectionError):
        failing.call(second)
    assert second.calls == 1  # budget exhausted: no retry
    clock.advance(11.0)
    third = Upstream(ConnectionError(), "ok")
    assert failing.call(third) == "ok"  # the window moved on


def test_the_budget_grows_with_first_attempts(clock: FakeClock) -> None:
    budget = RetryBudget(ratio=0.2, minimum_retries=0, window=10, clock=clock)
    for _ in range(10):
        budget.deposit()
    assert [budget.try_withdraw() for _ in range(3)] == [True, True, False]


def test_retries_of_one_name_share_one_budget(
    registry: ResilienceRegistry, waits: list[float]
) -> None:
    one = resilient("shared", registry=registry, breaker=False)
    two = resilient("shared", registry=registry, breaker=False)
    assert one.budget is two.budget is not None


def test_a_deadline_shorter_than_the_backoff_stops_retries_early(
    registry: ResilienceRegistry, waits: list[float]
) -> None:
    upstream = Upstream(ConnectionError(), "ok")
    slow_backoff = Retry(wait=wait_fixed(5.0))
    started = time.monotonic()
    with deadline(1.0), pytest.raises(ConnectionError):
        policy(registry, retry=slow_backoff).call(upstream)
    assert upstream.calls == 1
    assert waits == []
    assert time.monotonic() - started < 0.5


def test_no_retry_starts_when_the_last_attempt_would_not_fit(
    registry: ResilienceRegistry, waits: list[float]
) -> None:
    calls = 0

    def slow_failure() -> None:
        nonlocal calls
        calls += 1
        time.sleep(0.15)
        raise ConnectionError

    with deadline(0.25), pytest.raises(ConnectionError):
        policy(registry, retry=Retry(wait=wait_fixed(0.0))).call(slow_failure)
    assert calls == 1  # 0.15 s left would not hold another 0.15 s attempt


def test_a_passed_deadline_refuses_the_attempt(registry: ResilienceRegistry) -> None:
    upstream = Upstream("ok")
    with deadline(0.001):
        time.sleep(0.01)
        with pytest.raises(DeadlineExceededError):
            policy(registry).call(upstream)
    assert upstream.calls == 0


def test_the_deadline_argument_bounds_one_call_and_is_reset_after(
    registry: ResilienceRegistry,
) -> None:
    from hardenkit.context import remaining_time

    seen: list[float | None] = []
    policy(registry, deadline=2.0, timeout=None).call(lambda: seen.append(remaining_time()))
    assert seen[0] is not None
    assert 1.5 < seen[0] <= 2.0
    assert remaining_time() is None


def test_an_open_breaker_ends_the_retries(
    registry: ResilienceRegistry, waits: list[float], clock: FakeClock
) -> None:
    breaker = CircuitBreaker("flaky", window_size=2, minimum_calls=2, clock=clock)
    upstream = Upstream(ConnectionError())
    with pytest.raises(CircuitOpenError):
        resilient("flaky", registry=registry, breaker=breaker, budget=False, attempts=5).call(
            upstream
        )
    assert upstream.calls == 2


def test_tenacity_strategies_are_the_policy_vocabulary(
    registry: ResilienceRegistry, waits: list[float]
) -> None:
    custom = Retry(
        attempts=4,
        wait=wait_fixed(0.5),
        retry_on=retry_if_exception_type(KeyError),
        stop=stop_after_delay(60),
    )
    upstream = Upstream(KeyError("a"), KeyError("b"), "ok")
    assert policy(registry, retry=custom).call(upstream) == "ok"
    assert waits == [0.5, 0.5]


def test_retry_is_usable_alone_as_a_decorator(waits: list[float]) -> None:
    upstream = Upstream(ConnectionError(), "ok")

    @Retry(attempts=2)
    def fetch() -> object:
        return upstream()

    assert fetch() == "ok"


async def test_async_calls_retry_the_same_way(
    registry: ResilienceRegistry, waits: list[float]
) -> None:
    upstream = Upstream(ConnectionError(), response(429, **{"Retry-After": "1"}), "ok")
    assert await policy(registry).call_async(upstream.call_async) == "ok"
    assert upstream.calls == 3
    assert waits[1] == 1.0


async def test_async_deadline_shorter_than_the_backoff_stops_retries_early(
    registry: ResilienceRegistry, waits: list[float]
) -> None:
    upstream = Upstream(ConnectionError(), "ok")
    async with deadline(1.0):
        with pytest.raises(ConnectionError):
            await policy(registry, retry=Retry(wait=wait_fixed(5.0))).call_async(
                upstream.call_async
            )
    assert upstream.calls == 1


@pytest.mark.parametrize("http", [httpx, httpx2], ids=["httpx", "httpx2"])
def test_classification_of_errors(http: ModuleType) -> None:
    assert is_transient_error(http.ConnectTimeout("t"))
    assert is_transient_error(http.ConnectError("c"))
    assert is_transient_error(http.RemoteProtocolError("r"))
    assert not is_transient_error(http.LocalProtocolError("l"))
    assert not is_transient_error(CircuitOpenError("x", 1.0))
    request = http.Request("GET", "http://upstream.test/")
    for status, expected in ((503, True), (404, False)):
        error = http.HTTPStatusError(
            "x", request=request, response=http.Response(status, request=request)
        )
        assert is_transient_error(error) is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", 0.0),
        ("7", 7.0),
        (b"12", 12.0),
        (" 3 ", 3.0),
        ("-1", None),
        ("1.5", None),
        ("soon", None),
        ("", None),
        ("99999999", 86400.0),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),
    ],
)
def test_parse_retry_after(value: str | bytes, expected: float | None) -> None:
    assert parse_retry_after(value) == expected


def test_parse_retry_after_http_date_relative_to_now() -> None:
    now = 1_700_000_000.0
    header = email.utils.formatdate(now + 42, usegmt=True)
    assert parse_retry_after(header, now=now) == 42.0


@given(st.one_of(st.text(max_size=40), st.binary(max_size=40)))
def test_parse_retry_after_never_raises_and_never_goes_negative(value: str | bytes) -> None:
    result = parse_retry_after(value)
    assert result is None or 0.0 <= result <= 86400.0


@pytest.mark.parametrize(
    ("outcomes", "expected_waits"),
    [
        ((ConnectionError("a"), response(503, **{"Retry-After": "2"}), "ok"), [1.0, 2.0]),
        ((ConnectionError("a"), ConnectionError("b"), ConnectionError("c")), [1.0, 1.0]),
        ((response(503), response(503), response(503)), [1.0, 1.0]),
    ],
    ids=["recovers", "gives-up-raising", "gives-up-returning"],
)
async def test_sync_and_async_calls_retry_the_same_way(
    outcomes: tuple[object, ...],
    expected_waits: list[float],
    registry: ResilienceRegistry,
    waits: list[float],
) -> None:
    retry = Retry(attempts=3, wait=wait_fixed(1))
    sync_upstream, async_upstream = Upstream(*outcomes), Upstream(*outcomes)
    endings: list[object] = []
    try:
        endings.append(policy(registry, retry=retry)(sync_upstream)())
    except ConnectionError as error:
        endings.append(error)
    assert waits == expected_waits
    waits.clear()
    try:
        endings.append(await policy(registry, retry=retry)(async_upstream.call_async)())
    except ConnectionError as error:
        endings.append(error)
    assert waits == expected_waits
    assert sync_upstream.calls == async_upstream.calls == 3
    assert endings[0] is endings[1] is outcomes[-1]
