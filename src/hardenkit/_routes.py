"""Every route an application serves, flattened: its full path and its path parameters.

Startup checks (tenant parameters left unbound, public prefixes over protected routes, a
login route without the login rate limit) need the routes as a client reaches them:
Starlette ``Route``/``WebSocketRoute``, ``Mount`` and ``Host`` (their routes under the
mount's prefix), and FastAPI routers, included with ``include_router`` at any depth.
FastAPI (0.16x) keeps an included router as one route whose *effective candidates*
already carry the prefixed paths; older FastAPI copies the routes into the app's router.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["RouteInfo", "inner_routes", "iter_routes", "template_params"]

_MAX_DEPTH = 16
_PARAM = re.compile(r"{([A-Za-z_][A-Za-z0-9_]*)(?::[^}]*)?}")


@dataclass(frozen=True, slots=True)
class RouteInfo:
    """One endpoint: the path a client requests (template) and what serves it."""

    path: str
    params: tuple[str, ...]
    route: Any

    @property
    def endpoint(self) -> Any:
        """The handler (FastAPI's effective routes keep it on their original route)."""
        original = getattr(self.route, "original_route", None)
        return getattr(self.route, "endpoint", None) or getattr(original, "endpoint", None)


def template_params(template: str) -> tuple[str, ...]:
    """The parameter names in a path or host template: ``/t/{tenant_id}`` has ``tenant_id``."""
    return tuple(_PARAM.findall(template))


def inner_routes(route: Any) -> Sequence[Any]:
    """Routes below ``route``: a Mount's or Router's, or an included FastAPI router's."""
    routes = getattr(route, "routes", None)
    if routes:
        return list(routes)
    candidates = getattr(route, "effective_candidates", None)
    if callable(candidates):
        found = list(candidates())
        low_priority = getattr(route, "effective_low_priority_routes", None)
        if callable(low_priority):
            found.extend(low_priority())
        return found
    return ()


def iter_routes(app: Any) -> Iterator[RouteInfo]:
    """Yield every endpoint of ``app`` (a Starlette/FastAPI app or a router)."""
    router = getattr(app, "router", app)
    yield from _walk(getattr(router, "routes", ()), "", 0)


def _walk(routes: Sequence[Any], prefix: str, depth: int) -> Iterator[RouteInfo]:
    for route in routes:
        path = getattr(route, "path", None)
        if hasattr(route, "effective_candidates"):
            # An included FastAPI router: its candidates' paths hold every prefix already.
            if depth < _MAX_DEPTH:
                yield from _walk(inner_routes(route), prefix, depth + 1)
            continue
        inner = inner_routes(route) if hasattr(route, "routes") else ()
        if inner:
            if depth < _MAX_DEPTH:
                yield from _walk(inner, prefix + (path or "").rstrip("/"), depth + 1)
            continue
        if path is None:
            continue
        full = prefix + path
        yield RouteInfo(full, template_params(full), route)
