"""``RequestMetricsMiddleware``: HTTP server duration and active requests, by route template.

Records :data:`hardenkit.telemetry.request_duration` and
:data:`hardenkit.telemetry.active_requests` following the OpenTelemetry HTTP semantic
conventions. ``install()`` places it outside the error layer, so the 500s it answers are
counted. Without a configured ``MeterProvider`` (the OpenTelemetry API's no-op default,
checked once, at the first request) it records nothing and adds nothing to a request.
"""

from __future__ import annotations

import re
import time
from typing import Any

from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hardenkit._paths import route_path
from hardenkit.context import FACTS_KEY, own_facts
from hardenkit.telemetry import active_requests, metrics_configured, request_duration

__all__ = ["RequestMetricsMiddleware"]

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

    Whether a ``MeterProvider`` is configured is decided at the first request: set the
    SDK's provider before serving (at import or in the lifespan startup). Without one,
    every request passes straight through.

    Args:
        app: The ASGI application to wrap.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._templates: dict[Any, list[tuple[str, re.Pattern[str]]]] = {}
        self._templates_built_for = -1
        self._recording: bool | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if FACTS_KEY not in scope:  # the first hardenkit layer of this request
            await own_facts(self, scope, receive, send)
            return
        recording = self._recording
        if recording is None:
            recording = self._recording = metrics_configured()
        if not recording:
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
