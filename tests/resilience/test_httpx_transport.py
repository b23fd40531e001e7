"""ResilientTransport on real httpx clients against an in-process upstream."""

from __future__ import annotations

import httpx
import pytest

from hardenkit.context import request_id_var, trace_id_var
from hardenkit.resilience import (
    CircuitBreaker,
    CircuitOpenError,
    ResilienceRegistry,
    resilient,
)
from hardenkit.resilience.httpx import ResilientTransport


class Upstream:
    """A scripted upstream: answers the given statuses in order, recording requests."""

    def __init__(self, *statuses: int, headers: dict[str, str] | None = None) -> None:
        self.statuses = list(statuses)
        self.headers = headers or {}
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        status = self.statuses[min(len(self.requests), len(self.statuses)) - 1]
        return httpx.Response(status, headers=self.headers, text=f"answer {len(self.requests)}")


def transport_for(
    upstream: Upstream, registry: ResilienceRegistry, **options: object
) -> ResilientTransport:
    def policy(host: str) -> object:
        return resilient(host, registry=registry, budget=False, **options)  # type: ignore[arg-type]

    return ResilientTransport(httpx.MockTransport(upstream), default_policy=policy)  # type: ignore[arg-type]


def test_idempotent_requests_are_retried_and_the_final_answer_returned(
    registry: ResilienceRegistry, waits: list[float]
) -> None:
    upstream = Upstream(503, 200)
    with httpx.Client(transport=transport_for(upstream, registry)) as client:
        answer = client.get("http://upstream.test/items")
    assert answer.status_code == 200
    assert answer.text == "answer 2"
    assert len(upstream.requests) == 2


def test_post_is_not_retried_unless_it_carries_an_idempotency_key(
    registry: ResilienceRegistry, waits: list[float]
) -> None:
    upstream = Upstream(503, 503, 200)
    with httpx.Client(transport=transport_for(upstream, registry)) as client:
        assert client.post("http://upstream.test/pay", json={"amount": 5}).status_code == 503
        assert len(upstream.requests) == 1
        keyed = client.post(
            "http://upstream.test/pay", json={"amount": 5}, headers={"Idempotency-Key": "k1"}
        )
    assert keyed.status_code == 200
    assert len(upstream.requests) == 3
    assert upstream.requests[1].content == upstream.requests[2].content == b'{"amount":5}'


def test_the_last_error_response_is_returned_readable_after_the_attempts(
    registry: ResilienceRegistry, waits: list[float]
) -> None:
    upstream = Upstream(502)
    with httpx.Client(transport=transport_for(upstream, registry)) as client:
        answer = client.get("http://upstream.test/")
    assert answer.status_code == 502
    assert answer.text == "answer 3"


def test_retry_after_from_the_upstream_is_honoured(
    registry: ResilienceRegistry, waits: list[float]
) -> None:
    upstream = Upstream(429, 200, headers={"Retry-After": "4"})
    with httpx.Client(transport=transport_for(upstream, registry)) as client:
        assert client.get("http://upstream.test/").status_code == 200
    assert waits == [4.0]


def test_5xx_responses_open_the_hosts_breaker(
    registry: ResilienceRegistry, waits: list[float]
) -> None:
    upstream = Upstream(500)
    breaker = CircuitBreaker("flaky.test", window_size=3, minimum_calls=3)
    policy = resilient("flaky.test", registry=registry, breaker=breaker, attempts=1)
    transport = ResilientTransport(httpx.MockTransport(upstream), policies={"flaky.test": policy})
    with httpx.Client(transport=transport) as client:
        for _ in range(3):
            assert client.get("http://flaky.test/").status_code == 500
        with pytest.raises(CircuitOpenError):
            client.get("http://flaky.test/")
    assert len(upstream.requests) == 3


def test_4xx_responses_are_neither_retried_nor_failures(
    registry: ResilienceRegistry, waits: list[float]
) -> None:
    upstream = Upstream(404)
    with httpx.Client(transport=transport_for(upstream, registry)) as client:
        for _ in range(12):
            assert client.get("http://upstream.test/missing").status_code == 404
    assert len(upstream.requests) == 12
    breaker = registry.breakers()["upstream.test"]
    assert breaker.snapshot()["failure_rate"] == 0.0


def test_request_id_and_trace_context_are_forwarded(registry: ResilienceRegistry) -> None:
    upstream = Upstream(200)
    request_token = request_id_var.set("req-123")
    trace_token = trace_id_var.set("4bf92f3577b34da6a3ce929d0e0e4736")
    try:
        with httpx.Client(transport=transport_for(upstream, registry)) as client:
            client.get("http://upstream.test/")
            client.get("http://upstream.test/", headers={"X-Request-ID": "caller-chosen"})
    finally:
        request_id_var.reset(request_token)
        trace_id_var.reset(trace_token)
    first, second = upstream.requests
    assert first.headers["x-request-id"] == "req-123"
    assert first.headers["traceparent"].startswith("00-4bf92f3577b34da6a3ce929d0e0e4736-")
    assert second.headers["x-request-id"] == "caller-chosen"


def test_socket_timeouts_shrink_to_the_attempt_budget(registry: ResilienceRegistry) -> None:
    upstream = Upstream(200)
    with httpx.Client(transport=transport_for(upstream, registry, timeout=0.5)) as client:
        client.get("http://upstream.test/", timeout=30.0)
    budget = upstream.requests[0].extensions["timeout"]
    assert all(0 < value <= 0.5 for value in budget.values())


async def test_async_client_goes_through_the_same_policy(
    registry: ResilienceRegistry, waits: list[float]
) -> None:
    upstream = Upstream(503, 504, 200)
    async with httpx.AsyncClient(transport=transport_for(upstream, registry)) as client:
        answer = await client.get("http://upstream.test/")
    assert answer.status_code == 200
    assert len(upstream.requests) == 3


async def test_transport_errors_are_retried_then_raised(
    registry: ResilienceRegistry, waits: list[float]
) -> None:
    attempts = 0

    def refuse(request: httpx.Request) -> httpx.Response:
        nonlocal attempts
        attempts += 1
        raise httpx.ConnectError("refused", request=request)

    def policy(host: str) -> object:
        return resilient(host, registry=registry, budget=False)

    transport = ResilientTransport(httpx.MockTransport(refuse), default_policy=policy)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get("http://down.test/")
    assert attempts == 3
