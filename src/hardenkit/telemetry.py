"""OpenTelemetry instruments, through ``opentelemetry-api`` only.

With no SDK installed the API hands out no-op instruments, so recording costs a function
call. With an SDK configured by the application, these appear under the ``hardenkit``
meter. Every piece records through the instruments defined here, so names stay in one
place (docs/telemetry.md lists them).

The API's meter is a proxy: instruments created here at import time start recording
into whichever ``MeterProvider`` the application sets later, so import order does not
matter. :class:`hardenkit.requestmetrics.RequestMetricsMiddleware` records the HTTP server
instruments; :func:`add_span_event` puts refusals on the current span.
"""

from __future__ import annotations

from collections.abc import Mapping

from opentelemetry import metrics, trace

from hardenkit._version import __version__

__all__ = [
    "active_requests",
    "add_span_event",
    "auth_failures",
    "breaker_state",
    "breaker_transitions",
    "meter",
    "metrics_configured",
    "ratelimit_decisions",
    "request_duration",
    "retries",
    "signature_failures",
    "store_fallbacks",
    "store_timeouts",
    "tenant_mismatches",
    "timeouts",
]

meter = metrics.get_meter("hardenkit", __version__)

request_duration = meter.create_histogram(
    "http.server.request.duration",
    unit="s",
    description="Duration of inbound HTTP requests (its count is the request count).",
    explicit_bucket_boundaries_advisory=[
        0.005,
        0.01,
        0.025,
        0.05,
        0.075,
        0.1,
        0.25,
        0.5,
        0.75,
        1,
        2.5,
        5,
        7.5,
        10,
    ],
)
active_requests = meter.create_up_down_counter(
    "http.server.active_requests",
    unit="{request}",
    description="Inbound HTTP requests being served.",
)
auth_failures = meter.create_counter(
    "hardenkit.auth.failures", unit="{request}", description="Requests refused by auth, by reason."
)
tenant_mismatches = meter.create_counter(
    "hardenkit.auth.tenant_mismatches",
    unit="{request}",
    description="Requests whose tenant header or path differed from the verified claim.",
)
ratelimit_decisions = meter.create_counter(
    "hardenkit.ratelimit.decisions",
    unit="{decision}",
    description="Rate-limit decisions by rule and outcome.",
)
store_fallbacks = meter.create_counter(
    "hardenkit.store.fallbacks",
    unit="{event}",
    description="Times a Redis-backed store switched to its in-memory fallback.",
)
store_timeouts = meter.create_counter(
    "hardenkit.store.timeouts",
    unit="{call}",
    description=(
        "Redis calls that timed out without switching the store to its fallback; each was "
        "answered by the fallback alone."
    ),
)
breaker_transitions = meter.create_counter(
    "hardenkit.breaker.transitions",
    unit="{transition}",
    description="Circuit breaker state changes by breaker name and target state.",
)
retries = meter.create_counter(
    "hardenkit.retry.attempts", unit="{attempt}", description="Retry attempts by policy name."
)
timeouts = meter.create_counter(
    "hardenkit.timeouts", unit="{event}", description="Timeouts by kind (inbound / outbound)."
)
signature_failures = meter.create_counter(
    "hardenkit.signature.failures",
    unit="{request}",
    description="Webhooks or messages refused by signature checks, by reason.",
)
breaker_state = meter.create_gauge(
    "hardenkit.breaker.state",
    unit="{state}",
    description="Current circuit breaker state by breaker: 0 closed, 1 half-open, 2 open.",
)


def metrics_configured() -> bool:
    """Whether the application set a ``MeterProvider`` (not the API's no-op default).

    Until one is set, the API's global provider is a proxy whose instruments drop every
    measurement; an explicitly set ``NoOpMeterProvider`` drops them too. The check costs
    microseconds (the API reads the environment), so callers make it once: the request
    metrics layer, at its first request, after the application's startup.
    """
    provider = metrics.get_meter_provider()
    if isinstance(provider, metrics.NoOpMeterProvider):
        return False
    # The API's default (opentelemetry.metrics._internal._ProxyMeterProvider) is private.
    return type(provider).__name__ != "_ProxyMeterProvider"


def add_span_event(name: str, attributes: Mapping[str, str | int | float | bool]) -> None:
    """Add an event to the current span, if one is recording (a refusal, an audit event).

    Costs one context lookup when no tracing SDK is configured. Never pass a credential
    or personal data as an attribute: spans leave the process unredacted.
    """
    span = trace.get_current_span()
    if span.is_recording():
        span.add_event(name, dict(attributes))
