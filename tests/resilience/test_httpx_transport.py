"""ResilientTransport on real httpx and httpx2 clients against an in-process upstream.

Every test runs on both packages: the OpenAI SDK and Starlette's ``TestClient`` send
through ``httpx2``, most other clients through ``httpx``; the rules are the same.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import httpx
import httpx2
import pytest

from hardenkit.context import request_id_var, trace_id_var
from hardenkit.resilience import (
    CircuitBreaker,
    CircuitOpenError,
    ResilienceRegistry,
    resilient,
)
from hardenkit.resilience import httpx as for_httpx
from hardenkit.resilience import httpx2 as for_httpx2

TRANSPORTS: dict[ModuleType, Any] = {
    httpx: for_httpx.ResilientTransport,
    httpx2: for_httpx2.ResilientTransport,
}


@pytest.fixture(params=[httpx, httpx2], ids=["httpx", "httpx2"])
def http(request: pytest.FixtureRequest) -> ModuleType:
    """The client package a test runs on."""
    module: ModuleType = request.param
    return module


class Upstream:
    """A scripted upstream: answers the given statuses in order, recording requests."""

    def __init__(
        self, http: ModuleType, *statuses: int, headers: dict[str, str] | None = None
    ) -> None:
        self.http = http
        self.statuses = list(statuses)
        self.headers = headers or {}
        self.requests: list[Any] = []

    def __call__(self, request: Any) -> Any:
        self.requests.append(request)
        status = self.statuses[min(len(self.requests), len(self.statuses)) - 1]
        return self.http.Response(status, headers=self.headers, text=f"answer {len(self.requests)}")


def transport_for(upstream: Upstream, registry: ResilienceRegistry, **options: Any) -> Any:
    def policy(host: str) -> Any:
        return resilient(host, registry=registry, budget=False, **options)

    http = upstream.http
    return TRANSPORTS[http](http.MockTransport(upstream), default_policy=policy)


def test_idempotent_requests_are_retried_and_the_final_answer_returned(
    http: ModuleType, registry: ResilienceRegistry, waits: list[float]
) -> None:
    upstream = Upstream(http, 503, 200)
    with http.Client(transport=transport_for(upstream, registry)) as client:
        answer = client.get("http://upstream.test/items")
    assert answer.status_code == 200
    assert answer.text == "answer 2"
    assert len(upstream.requests) == 2


def test_post_is_not_retried_unless_it_carries_an_idempotency_key(
    http: ModuleType, registry: ResilienceRegistry, waits: list[float]
) -> None:
    upstream = Upstream(http, 503, 503, 200)
    with http.Client(transport=transport_for(upstream, registry)) as client:
        assert client.post("http://upstream.test/pay", json={"amount": 5}).status_code == 503
        assert len(upstream.requests) == 1
        keyed = client.post(
            "http://upstream.test/pay", json={"amount": 5}, headers={"Idempotency-Key": "k1"}
        )
    assert keyed.status_code == 200
    assert len(upstream.requests) == 3
    assert upstream.requests[1].content == upstream.requests[2].content == b'{"amount":5}'


def test_the_last_error_response_is_returned_readable_after_the_attempts(
    http: ModuleType, registry: ResilienceRegistry, waits: list[float]
) -> None:
    upstream = Upstream(http, 502)
    with http.Client(transport=transport_for(upstream, registry)) as client:
        answer = client.get("http://upstream.test/")
    assert answer.status_code == 502
    assert answer.text == "answer 3"


def test_retry_after_from_the_upstream_is_honoured(
    http: ModuleType, registry: ResilienceRegistry, waits: list[float]
) -> None:
    upstream = Upstream(http, 429, 200, headers={"Retry-After": "4"})
    with http.Client(transport=transport_for(upstream, registry)) as client:
        assert client.get("http://upstream.test/").status_code == 200
    assert waits == [4.0]


def test_5xx_responses_open_the_hosts_breaker(
    http: ModuleType, registry: ResilienceRegistry, waits: list[float]
) -> None:
    upstream = Upstream(http, 500)
    breaker = CircuitBreaker("flaky.test", window_size=3, minimum_calls=3)
    policy = resilient("flaky.test", registry=registry, breaker=breaker, attempts=1)
    transport = TRANSPORTS[http](http.MockTransport(upstream), policies={"flaky.test": policy})
    with http.Client(transport=transport) as client:
        for _ in range(3):
            assert client.get("http://flaky.test/").status_code == 500
        with pytest.raises(CircuitOpenError):
            client.get("http://flaky.test/")
    assert len(upstream.requests) == 3


def test_4xx_responses_are_neither_retried_nor_failures(
    http: ModuleType, registry: ResilienceRegistry, waits: list[float]
) -> None:
    upstream = Upstream(http, 404)
    with http.Client(transport=transport_for(upstream, registry)) as client:
        for _ in range(12):
            assert client.get("http://upstream.test/missing").status_code == 404
    assert len(upstream.requests) == 12
    breaker = registry.breakers()["upstream.test"]
    assert breaker.snapshot()["failure_rate"] == 0.0


def test_request_id_and_trace_context_are_forwarded(
    http: ModuleType, registry: ResilienceRegistry
) -> None:
    upstream = Upstream(http, 200)
    request_token = request_id_var.set("req-123")
    trace_token = trace_id_var.set("4bf92f3577b34da6a3ce929d0e0e4736")
    try:
        with http.Client(transport=transport_for(upstream, registry)) as client:
            client.get("http://upstream.test/")
            client.get("http://upstream.test/", headers={"X-Request-ID": "caller-chosen"})
    finally:
        request_id_var.reset(request_token)
        trace_id_var.reset(trace_token)
    first, second = upstream.requests
    assert first.headers["x-request-id"] == "req-123"
    assert first.headers["traceparent"].startswith("00-4bf92f3577b34da6a3ce929d0e0e4736-")
    assert second.headers["x-request-id"] == "caller-chosen"


def test_socket_timeouts_shrink_to_the_attempt_budget(
    http: ModuleType, registry: ResilienceRegistry
) -> None:
    upstream = Upstream(http, 200)
    with http.Client(transport=transport_for(upstream, registry, timeout=0.5)) as client:
        client.get("http://upstream.test/", timeout=30.0)
    budget = upstream.requests[0].extensions["timeout"]
    assert all(0 < value <= 0.5 for value in budget.values())


async def test_async_client_goes_through_the_same_policy(
    http: ModuleType, registry: ResilienceRegistry, waits: list[float]
) -> None:
    upstream = Upstream(http, 503, 504, 200)
    async with http.AsyncClient(transport=transport_for(upstream, registry)) as client:
        answer = await client.get("http://upstream.test/")
    assert answer.status_code == 200
    assert len(upstream.requests) == 3


async def test_transport_errors_are_retried_then_raised(
    http: ModuleType, registry: ResilienceRegistry, waits: list[float]
) -> None:
    attempts = 0

    def refuse(request: Any) -> Any:
        nonlocal attempts
        attempts += 1
        raise http.ConnectError("refused", request=request)

    def policy(host: str) -> Any:
        return resilient(host, registry=registry, budget=False)

    transport = TRANSPORTS[http](http.MockTransport(refuse), default_policy=policy)
    async with http.AsyncClient(transport=transport) as client:
        with pytest.raises(http.ConnectError):
            await client.get("http://down.test/")
    assert attempts == 3


def test_a_transport_of_the_other_package_is_refused_at_construction() -> None:
    # httpx's and httpx2's classes share their names, not their types: a mix-up would
    # otherwise fail on the first request with a misleading message.
    with pytest.raises(TypeError, match="wraps a httpx2 transport, not a httpx one"):
        for_httpx2.ResilientTransport(httpx.MockTransport(lambda request: httpx.Response(200)))
    with pytest.raises(TypeError, match="wraps a httpx transport, not a httpx2 one"):
        for_httpx.ResilientTransport(httpx2.MockTransport(lambda request: httpx2.Response(200)))
