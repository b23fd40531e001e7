"""OpenTelemetry instruments, through ``opentelemetry-api`` only.

With no SDK installed the API hands out no-op instruments, so recording costs a function
call. With an SDK configured by the application, these appear under the ``hardenkit``
meter. Every piece records through the instruments defined here, so names stay in one
place (docs/telemetry.md lists them).
"""

from __future__ import annotations

from opentelemetry import metrics

from hardenkit._version import __version__

__all__ = [
    "auth_failures",
    "breaker_transitions",
    "meter",
    "ratelimit_decisions",
    "request_duration",
    "retries",
    "signature_failures",
    "store_fallbacks",
    "tenant_mismatches",
    "timeouts",
]

meter = metrics.get_meter("hardenkit", __version__)

request_duration = meter.create_histogram(
    "http.server.request.duration",
    unit="s",
    description="Duration of inbound HTTP requests.",
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
