"""OpenTelemetry instruments, through ``opentelemetry-api`` only.

With no SDK installed the API hands out no-op instruments, so recording costs a function
call. With an SDK configured by the application, these appear under the ``hardenkit``
meter. Every piece records through the instruments defined here, so names stay in one
place (docs/telemetry.md lists them).

The API's meter is a proxy: instruments created here at import time start recording
into whichever ``MeterProvider`` the application sets later, so import order does not
matter. :class:`RequestMetricsMiddleware` records the HTTP server instruments;
:func:`add_span_event` puts refusals on the current span.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import Any

from opentelemetry import metrics, trace
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hardenkit._paths import route_path
from hardenkit._version import __version__

__all__ = [
    "RequestMetricsMiddleware",
    "active_requests",
    "add_span_event",
    "auth_failures",
    "breaker_state",
    "breaker_transitions",
    "meter",
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


def add_span_event(name: str, attributes: Mapping[str, str | int | float | bool]) -> None:
    """Add an event to the current span, if one is recording (a refusal, an audit event).

    Costs one context lookup when no tracing SDK is configured. Never pass a credential
    or personal data as an attribute: spans leave the process unredacted.
    """
    span = trace.get_current_span()
    if span.is_recording():
        span.add_event(name, dict(attributes))


_KNOWN_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}
)


class RequestMetricsMiddleware:
    """Pure ASGI middleware recording ``http.server.request.duration`` and active requests.

    Attributes follow the OpenTelemetry HTTP semantic conventions:
    ``http.request.method`` (unknown methods as ``_OTHER``), ``http.response.status_code``,
    ``url.scheme``, ``http.route`` (the route *template*, e.g. ``/orders/{order_id}``,
    never the raw path: raw paths carry ids and sometimes secrets, and would make one
    time series per URL) and ``error.type`` for exceptions that escape. Place it outside
    the error middleware so 500s are counted.

    Args:
        app: The ASGI application to wrap.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._templates: dict[Any, list[tuple[str, re.Pattern[str]]]] = {}
        self._templates_built_for = -1

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope.get("method", "GET")
        base = {
            "http.request.method": method if method in _KNOWN_METHODS else "_OTHER",
            "url.scheme": scope.get("scheme", "http"),
        }
        status = 500
        error_type: str | None = None
        path = route_path(scope)

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        active_requests.add(1, base)
        start = time.perf_counter()
        try:
            await self.app(scope, receive, send_wrapper)
        except BaseException as exc:
            error_type = type(exc).__qualname__
            raise
        finally:
            attributes: dict[str, str | int] = {**base, "http.response.status_code": status}
            route = self._route(scope, path)
            if route is not None:
                attributes["http.route"] = route
            if error_type is not None:
                attributes["error.type"] = error_type
            request_duration.record(time.perf_counter() - start, attributes)
            active_requests.add(-1, base)

    def _route(self, scope: Scope, path: str) -> str | None:
        route = scope.get("route")
        template = getattr(route, "path_format", None) or getattr(route, "path", None)
        if isinstance(template, str) and "app_root_path" not in scope:
            return template  # FastAPI puts the matched route in the scope
        endpoint = scope.get("endpoint")
        if endpoint is None:
            return None  # nothing matched: a 404 has no route
        routes = getattr(scope.get("app"), "routes", None)
        if routes is None:
            return None
        if self._templates_built_for != len(routes):
            self._templates = _route_templates(routes)
            self._templates_built_for = len(routes)
        try:
            candidates = self._templates.get(endpoint, [])
        except TypeError:  # an unhashable endpoint
            return None
        if len(candidates) == 1:
            return candidates[0][0]
        # One endpoint behind several routes: the template whose pattern matches the path.
        return next((text for text, regex in candidates if regex.match(path)), None)


def _route_templates(routes: Any, prefix: str = "") -> dict[Any, list[tuple[str, re.Pattern[str]]]]:
    """Map each endpoint to the full path templates (and their patterns) that serve it."""
    templates: dict[Any, list[tuple[str, re.Pattern[str]]]] = {}
    for route in routes:
        path = getattr(route, "path", None)
        if not isinstance(path, str):
            continue
        inner = getattr(route, "routes", None)
        if inner and not hasattr(route, "endpoint"):  # a Mount
            for endpoint, found in _route_templates(inner, prefix + path).items():
                templates.setdefault(endpoint, []).extend(found)
            continue
        endpoint = getattr(route, "endpoint", None)
        if endpoint is None:
            continue
        template = prefix + path
        try:
            templates.setdefault(endpoint, []).append((template, compile_path(template)[0]))
        except TypeError:  # an unhashable endpoint
            continue
    return templates
