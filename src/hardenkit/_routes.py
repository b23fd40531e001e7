"""Every route an application serves, flattened: its full path and its path parameters.

Startup checks (tenant parameters left unbound, public prefixes over protected routes, a
login route without the login rate limit) need the routes as a client reaches them:
Starlette ``Route``/``WebSocketRoute``, ``Mount`` and ``Host`` (their routes under the
mount's prefix), and FastAPI routers, included with ``include_router`` at any depth.
FastAPI (0.16x) keeps an included router as one route whose *effective candidates*
already carry the prefixed paths; older FastAPI copies the routes into the app's router.
A candidate made from a Starlette route (a ``Mount``, ``Host``, ``Route`` in an included
router) is a context holding the prefixed copy as ``starlette_route``: that copy is the
route, everywhere below (:func:`effective_route`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.routing import Host, Match, Mount, Router
from starlette.types import Scope

__all__ = [
    "RouteInfo",
    "effective_route",
    "endpoint_of",
    "inner_routes",
    "iter_routes",
    "mounted_apps",
    "mounted_routes",
    "route_lists",
    "serving_route",
    "template_params",
]

_MAX_DEPTH = 16
_MAX_WRAPPERS = 8
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
        return endpoint_of(self.route)


def effective_route(route: Any) -> Any:
    """``route``, or the Starlette route a FastAPI candidate context stands for.

    ``APIRouter.mount()``, ``.host()`` or ``.add_route()`` in an included router become
    a context whose ``starlette_route`` is the route with the include's prefix: its
    ``Mount`` or ``Host`` (with the routes below it), its endpoint. Seen as an endpoint
    itself, the context would hide them all.
    """
    starlette_route = getattr(route, "starlette_route", None)
    return route if starlette_route is None else starlette_route


def endpoint_of(route: Any) -> Any:
    """The handler of ``route`` (FastAPI's effective routes keep it on their original route)."""
    route = effective_route(route)
    original = getattr(route, "original_route", None)
    return getattr(route, "endpoint", None) or getattr(original, "endpoint", None)


def template_params(template: str) -> tuple[str, ...]:
    """The parameter names in a path or host template: ``/t/{tenant_id}`` has ``tenant_id``."""
    return tuple(_PARAM.findall(template))


def mounted_routes(route: Any) -> list[Any] | None:
    """The route list of the router a ``Mount`` or ``Host`` passes requests to, if any.

    The mounted app may be wrapped in middleware (``Mount("/w", app=GZipMiddleware(sub))``,
    or the mount's own ``middleware=``): its router is found below the wrappers, through
    their ``app`` attributes. ``None`` for any other route, and for an app with no router
    (a WSGI app, a plain ASGI callable), whose routes cannot be seen.
    """
    route = effective_route(route)
    if not isinstance(route, Mount | Host):
        return None
    # From the mounted app down (the Mount's own ``routes`` is a fresh list when its app
    # is wrapped): the first router's own list, empty or not, so that a route added to
    # it later is seen (:func:`route_lists`).
    app: Any = route.app
    for _ in range(_MAX_WRAPPERS):
        if isinstance(app, Router):
            return app.routes
        router = getattr(app, "router", None)
        inner = getattr(app, "app", None)
        if inner is None:
            # An app (Starlette, FastAPI) answers through its router; anything else is a
            # plain ASGI app whose routes cannot be seen.
            return router.routes if isinstance(router, Router) else None
        if router is not None or getattr(app, "routes", None) is not None:
            # A wrapper that may route some requests itself (it keeps a router, or routes)
            # before passing the rest on: which routes serve what cannot be told, and
            # trusting either list would leave the other unchecked (an attacker round
            # read another tenant's data below a /_ping middleware).
            return None
        app = inner
    return None


def mounted_apps(app: Any) -> Iterator[Starlette]:
    """Every Starlette (or FastAPI) app mounted below ``app``, at any depth.

    Found below the middleware a mount wraps it in, and in included FastAPI routers.
    """
    router = getattr(app, "router", app)
    pending: list[tuple[Sequence[Any], int]] = [(getattr(router, "routes", ()), 0)]
    while pending:
        routes, depth = pending.pop()
        for candidate in routes:
            route = effective_route(candidate)
            below: Sequence[Any] = ()
            if isinstance(route, Mount | Host):
                mounted: Any = route.app
                for _ in range(_MAX_WRAPPERS):
                    if isinstance(mounted, Starlette):
                        yield mounted
                        below = mounted.router.routes
                        break
                    mounted = getattr(mounted, "app", None)
                else:
                    below = inner_routes(route)  # Mount("/v1", routes=[...]): a Router
            elif hasattr(route, "effective_candidates"):
                below = inner_routes(route)  # an included FastAPI router
            if below and depth < _MAX_DEPTH:
                pending.append((below, depth + 1))


def inner_routes(route: Any) -> Sequence[Any]:
    """Routes below ``route``: a Mount's or Router's, or an included FastAPI router's."""
    route = effective_route(route)
    if isinstance(route, Mount | Host):
        # Only what mounted_routes trusts: a Mount's own ``routes`` is whatever its app
        # keeps under that name (a wrapper's list of labels, say).
        return list(mounted_routes(route) or ())
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


def route_lists(routes: list[Any]) -> tuple[tuple[list[Any], int], ...]:
    """``routes`` and every route list below it, each with its length now.

    The lists a route added after startup goes into: a ``Mount``'s or ``Host``'s router
    (below any middleware), an included FastAPI router's own list. A cache of answers
    about the routes is stale once any of them changed length.
    """
    found: list[tuple[list[Any], int]] = []

    def walk(own: list[Any], depth: int) -> None:
        if any(own is seen for seen, _ in found):
            return
        found.append((own, len(own)))
        if depth >= _MAX_DEPTH:
            return
        for route in own:
            for owner in (route, getattr(route, "original_router", None)):
                below = mounted_routes(owner)
                if below is None:
                    below = getattr(owner, "routes", None)
                if isinstance(below, list):
                    walk(below, depth + 1)

    walk(routes, 0)
    return tuple(found)


def iter_routes(app: Any) -> Iterator[RouteInfo]:
    """Yield every endpoint of ``app`` (a Starlette/FastAPI app or a router)."""
    router = getattr(app, "router", app)
    yield from _walk(getattr(router, "routes", ()), "", 0)


def _walk(routes: Sequence[Any], prefix: str, depth: int) -> Iterator[RouteInfo]:
    for candidate in routes:
        route = effective_route(candidate)
        path = getattr(route, "path", None)
        if hasattr(route, "effective_candidates"):
            # An included FastAPI router: its candidates' paths hold every prefix already.
            if depth < _MAX_DEPTH:
                yield from _walk(inner_routes(route), prefix, depth + 1)
            continue
        inner = inner_routes(route) if hasattr(route, "routes") or mounted_routes(route) else ()
        if inner:
            if depth < _MAX_DEPTH:
                yield from _walk(inner, prefix + (path or "").rstrip("/"), depth + 1)
            continue
        if path is None:
            continue
        full = prefix + path
        yield RouteInfo(full, template_params(full), route)


def serving_route(
    routes: Sequence[Any], scope: Scope, depth: int = 0
) -> tuple[Any, dict[str, Any]] | None:
    """The route that will serve ``scope`` as the router picks it, with its path parameters.

    ``None`` when no endpoint will (a 404, a 405 or a redirect answers). The first route
    whose ``matches(scope)`` is ``Match.FULL`` serves the request, as in the router: a
    route's own ``matches`` knows its scope type (``Route`` is HTTP only,
    ``WebSocketRoute`` WebSocket only), its methods, and a ``Host``'s host. Below a
    ``Mount``, ``Host`` or included FastAPI router, its routes are matched in turn with
    its child scope; none of them matching means the mounted router answers (a 404), never
    a later route of the outer list. A mount whose routes cannot be seen (a WSGI app, a
    plain ASGI app) serves the request itself: the mount is returned.
    """
    for candidate in routes:
        matches = getattr(candidate, "matches", None)
        if matches is None:
            continue
        match, child = matches(scope)
        if match is not Match.FULL:
            continue
        route = candidate
        if callable(getattr(candidate, "_match", None)):
            selected = _fastapi_selection(candidate, scope)
            if selected is None:
                return None
            route, child = selected
        child = child or {}
        params: dict[str, Any] = dict(child.get("path_params") or {})
        route = effective_route(route)
        inner = inner_routes(route)
        if not inner:
            return route, params
        if depth >= _MAX_DEPTH:
            return None  # deeper than any app is built: no endpoint is assumed
        found = serving_route(inner, {**scope, **child}, depth + 1)
        if found is None:
            return None
        served_by, nested = found
        return served_by, {**params, **nested}
    return None


def _fastapi_selection(included: Any, scope: Scope) -> tuple[Any, Scope] | None:
    """The route an included FastAPI router picks for ``scope``, and its child scope.

    FastAPI (0.16x) selects among an included router's candidates itself
    (``_IncludedRouter._match``): an ``APIRoute``'s own ``matches`` runs with the
    candidate's prefixed context in the scope, so a ``route_class`` that overrides
    ``matches`` (case-insensitive paths) decides as it does when serving. Its choice is
    taken here rather than guessed; nested included routers are followed the same way.
    The scope is a copy: FastAPI sets and restores its own keys in it.
    """
    scope = dict(scope)
    router = included
    for _ in range(_MAX_DEPTH):
        match, child, route, context = router._match(scope)
        if match is not Match.FULL or route is None:
            return None
        if not callable(getattr(route, "_match", None)):
            starlette_route = getattr(context, "starlette_route", None)
            return (route if starlette_route is None else starlette_route), child
        scope.update(child)
        router = route
    return None
