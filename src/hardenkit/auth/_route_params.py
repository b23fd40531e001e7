"""The path parameters the router will give a request, found without routing it.

This is the one place that knows how Starlette (and FastAPI, whose routes are Starlette
routes) match a path: each route's ``matches(scope)`` answers ``Match.FULL`` with a child
scope holding ``path_params``; a ``Mount``, ``Host`` or included FastAPI router has inner
routes (:func:`hardenkit._routes.inner_routes`) matched with the child scope applied.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.routing import Match
from starlette.types import Scope

from hardenkit._routes import inner_routes

__all__ = ["route_path_params"]

_MAX_ROUTE_DEPTH = 8


def route_path_params(scope: Scope) -> dict[str, Any] | None:
    """Return the path parameters of the route serving ``scope``; ``None`` if none matches.

    The routes are those of ``scope["app"].router`` (what Starlette and FastAPI put in
    the scope before the middleware runs).
    """
    router = getattr(scope.get("app"), "router", None)
    routes = getattr(router, "routes", None)
    if not routes:
        return None
    return _match(routes, scope, 0)


def _match(routes: Sequence[Any], scope: Scope, depth: int) -> dict[str, Any] | None:
    for route in routes:
        matches = getattr(route, "matches", None)
        if matches is None:
            continue
        match, child = matches(scope)
        if match is not Match.FULL:
            continue
        params = dict((child or {}).get("path_params") or {})
        inner = inner_routes(route)
        if inner and depth < _MAX_ROUTE_DEPTH:
            nested = _match(inner, {**scope, **child}, depth + 1)
            if nested:
                params.update(nested)
        return params
    return None
