"""The OpenTelemetry instruments: names, attributes, and the request metrics middleware.

The API's global MeterProvider can be set only once per process, so one module-scoped
SDK provider with an in-memory reader serves every test here; each test reads the
points its own requests produced (distinct routes or attribute values).
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from hardenkit import telemetry
from hardenkit.errors import ErrorMiddleware
from hardenkit.logs import audit
from hardenkit.requestmetrics import RequestMetricsMiddleware


@pytest.fixture(scope="module")
def reader() -> InMemoryMetricReader:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    metrics.set_meter_provider(provider)
    if not isinstance(metrics.get_meter_provider(), MeterProvider):
        pytest.fail("another test set the global MeterProvider first")
    return reader


def _points(reader: InMemoryMetricReader, name: str) -> list[Any]:
    data = reader.get_metrics_data()
    found = []
    for resource_metrics in data.resource_metrics if data else []:
        for scope_metrics in resource_metrics.scope_metrics:
            if scope_metrics.scope.name != "hardenkit":
                continue
            for metric in scope_metrics.metrics:
                if metric.name == name:
                    found.extend(metric.data.data_points)
    return found


async def order(request: Request) -> Response:
    return PlainTextResponse("ok")


async def crash(request: Request) -> Response:
    raise RuntimeError("boom")


def _app() -> Any:
    app = Starlette(
        routes=[
            Route("/orders/{order_id}", order),
            Route("/crash", crash),
            Mount("/v2", routes=[Route("/items/{item_id}", order)]),
        ]
    )
    app.add_middleware(ErrorMiddleware)
    app.add_middleware(RequestMetricsMiddleware)
    return app


def test_every_instrument_other_pieces_record_through_exists_under_its_name(
    reader: InMemoryMetricReader,
) -> None:
    recordings = {
        "hardenkit.auth.failures": lambda: telemetry.auth_failures.add(1, {"reason": "expired"}),
        "hardenkit.auth.tenant_mismatches": lambda: telemetry.tenant_mismatches.add(1),
        "hardenkit.ratelimit.decisions": lambda: telemetry.ratelimit_decisions.add(
            1, {"rule": "auth", "outcome": "denied"}
        ),
        "hardenkit.store.fallbacks": lambda: telemetry.store_fallbacks.add(1, {"store": "redis"}),
        "hardenkit.store.timeouts": lambda: telemetry.store_timeouts.add(1, {"store": "redis"}),
        "hardenkit.breaker.transitions": lambda: telemetry.breaker_transitions.add(
            1, {"breaker": "billing", "state": "open"}
        ),
        "hardenkit.breaker.state": lambda: telemetry.breaker_state.set(2, {"breaker": "billing"}),
        "hardenkit.retry.attempts": lambda: telemetry.retries.add(1, {"policy": "billing"}),
        "hardenkit.timeouts": lambda: telemetry.timeouts.add(1, {"kind": "inbound"}),
        "hardenkit.signature.failures": lambda: telemetry.signature_failures.add(
            1, {"kind": "webhook", "reason": "expired"}
        ),
    }
    for record in recordings.values():
        record()
    for name in recordings:
        assert _points(reader, name), name
    [point] = [
        p
        for p in _points(reader, "hardenkit.ratelimit.decisions")
        if p.attributes["rule"] == "auth"
    ]
    assert dict(point.attributes) == {"rule": "auth", "outcome": "denied"}


def test_requests_are_measured_by_route_template_method_and_status(
    reader: InMemoryMetricReader,
) -> None:
    client = TestClient(_app(), raise_server_exceptions=False)
    for order_id in ("1", "2", "secret-looking-id-3"):
        assert client.get(f"/orders/{order_id}").status_code == 200
    assert client.get("/v2/items/9").status_code == 200
    assert client.get("/crash").status_code == 500
    assert client.get("/nowhere?token=abc").status_code == 404
    assert client.request("BREW", "/orders/1").status_code == 405

    points = {
        (
            p.attributes.get("http.route"),
            p.attributes["http.request.method"],
            p.attributes["http.response.status_code"],
        ): p
        for p in _points(reader, "http.server.request.duration")
    }
    assert points[("/orders/{order_id}", "GET", 200)].count == 3
    assert points[("/v2/items/{item_id}", "GET", 200)].count == 1
    assert points[("/crash", "GET", 500)].count == 1
    assert points[(None, "GET", 404)].count >= 1  # no route: no raw path in attributes
    assert ("/orders/{order_id}", "_OTHER", 405) in points
    sample = points[("/orders/{order_id}", "GET", 200)]
    assert dict(sample.attributes) == {
        "http.request.method": "GET",
        "url.scheme": "http",
        "http.response.status_code": 200,
        "http.route": "/orders/{order_id}",
    }
    assert all("token" not in str(key) for key in points)
    [active] = [
        p
        for p in _points(reader, "http.server.active_requests")
        if p.attributes == {"http.request.method": "GET", "url.scheme": "http"}
    ]
    assert active.value == 0


def test_an_exception_escaping_the_app_is_counted_with_its_type(
    reader: InMemoryMetricReader,
) -> None:
    async def raw_crash(scope: Any, receive: Any, send: Any) -> None:
        raise KeyError("x")

    client = TestClient(RequestMetricsMiddleware(raw_crash), raise_server_exceptions=False)
    assert client.get("/raw").status_code == 500
    [point] = [
        p
        for p in _points(reader, "http.server.request.duration")
        if p.attributes.get("error.type") == "KeyError"
    ]
    assert point.attributes["http.response.status_code"] == 500


def test_refusals_become_events_on_the_current_span() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("tests")
    with tracer.start_as_current_span("request"):
        audit("rate_limited", "denied", reason="ip_rule")
    [span] = exporter.get_finished_spans()
    [event] = span.events
    assert event.name == "hardenkit.audit"
    assert dict(event.attributes or {}) == {
        "hardenkit.audit.event_type": "rate_limited",
        "hardenkit.audit.outcome": "denied",
        "hardenkit.audit.reason": "ip_rule",
    }
    assert not trace.get_current_span().is_recording()


def test_without_a_meter_provider_the_request_metrics_layer_is_a_pass_through() -> None:
    # A fresh process: the API's default provider, as in a service without the SDK.
    code = """
import asyncio
from hardenkit.requestmetrics import RequestMetricsMiddleware
from hardenkit.telemetry import metrics_configured

assert not metrics_configured()
sends = []

async def app(scope, receive, send):
    sends.append(send)
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})

async def send(message):
    pass

layer = RequestMetricsMiddleware(app)
# Behind the request's first hardenkit layer (install()'s request id layer), which
# takes the request's facts in hand (hardenkit.context.own_facts) with a send of its own.
scope = {"type": "http", "method": "GET", "path": "/", "hardenkit.facts": True}
asyncio.run(layer(scope, None, send))
assert sends == [send], "the layer wrapped send without a provider to record into"
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr


def test_a_meter_provider_set_by_the_application_is_detected(
    reader: InMemoryMetricReader,
) -> None:
    assert telemetry.metrics_configured()
