"""The path parameters the router will give a request, found without routing it.

The matching itself is :func:`hardenkit._routes.serving_route`, the one place that
knows how Starlette (and FastAPI, whose routes are Starlette routes) pick the route for a
request; the route marks (``@public()``, ``@exempt()``) use it too.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence, Sized
from typing import Any

from starlette.types import Scope

from hardenkit._routes import effective_route, mounted_routes, serving_route, template_params

__all__ = ["RouteParamNames", "owned_route_lists", "route_path_params"]

_MAX_ROUTE_DEPTH = 8
_TEMPLATES = ("path", "path_format", "host")


def route_path_params(scope: Scope) -> dict[str, Any] | None:
    """Return the path parameters of the route serving ``scope``; ``None`` if none will.

    The routes are those of ``scope["app"].router`` (what Starlette and FastAPI put in
    the scope before the middleware runs), matched as the router matches them
    (:func:`hardenkit._routes.serving_route`).
    """
    router = getattr(scope.get("app"), "router", None)
    routes = getattr(router, "routes", None)
    if not routes:
        return None
    found = serving_route(routes, scope)
    return None if found is None else found[1]


def owned_route_lists(app: object) -> list[Sized]:
    """What changes when routes are added below ``app``'s router.

    Every route list a route added to would change, and every included FastAPI router's
    routes version (:class:`_RoutesVersion`).
    """
    router = getattr(app, "router", None)
    routes = getattr(router, "routes", None)
    watched: list[tuple[Sized, int]] = []
    if isinstance(routes, list):
        _scan(routes, watched, set(), 0)
    return [routes for routes, _ in watched]


class RouteParamNames:
    """Whether any route of the app serving a request can give one of ``names``.

    Tenant binding matches the request against the routes only when some route has a
    bound parameter: most apps have none, and routing twice is what it would cost. The
    answer is worked out once per app from every route template (Starlette routes,
    mounts, hosts, included FastAPI routers) and again whenever one of the route lists
    it walked changes length (a route added after the first request), or an included
    FastAPI router's routes version moves.
    """

    __slots__ = ("_any", "_app", "_names", "_top", "_watched")

    def __init__(self, names: Iterable[str]) -> None:
        self._names = frozenset(names)
        self._app: object = None
        self._top: object = None
        self._watched: tuple[tuple[Sized, int], ...] = ()
        self._any = False

    def in_app_of(self, scope: Scope) -> bool:
        """Whether a route of ``scope["app"]`` has one of the names as a parameter."""
        if not self._names:
            return False
        app = scope.get("app")
        if (
            app is not self._app
            # The app's own list given anew (routes = [...]) is as much a change as a route
            # added to one of the lists watched.
            or getattr(getattr(app, "router", None), "routes", None) is not self._top
            or any(len(routes) != n for routes, n in self._watched)
        ):
            self._refresh(app)
        return self._any

    def _refresh(self, app: object) -> None:
        router = getattr(app, "router", None)
        routes = getattr(router, "routes", None)
        watched: list[tuple[Sized, int]] = []
        found: set[str] = set()
        if isinstance(routes, list):
            _scan(routes, watched, found, 0)
        self._app = app
        self._top = routes
        self._watched = tuple(watched)
        self._any = not self._names.isdisjoint(found)


class _RoutesVersion:
    """An included FastAPI router's routes version, watched as a route list's length is.

    FastAPI serves an included router through contexts it builds anew (fresh endpoint
    apps) whenever the router's ``_routes_version`` moves: ``APIRouter.frontend()`` does
    that without adding to any route list.
    """

    __slots__ = ("_router",)

    def __init__(self, router: object) -> None:
        self._router = router

    def __len__(self) -> int:
        version = getattr(self._router, "_routes_version", 0)
        return version if isinstance(version, int) else 0


def _scan(
    routes: Sequence[Any],
    watched: list[tuple[Sized, int]],
    found: set[str],
    depth: int,
    *,
    owned: bool = True,
) -> None:
    """Collect every parameter name below ``routes``, and every route list it owns."""
    if owned:
        watched.append((routes, len(routes)))
    for route in routes:
        # The route, what it was made from, and the prefixed copy FastAPI serves (an
        # include's prefix may hold the parameter: "/tenants/{tenant_id}" + "/events").
        for node in (route, getattr(route, "original_route", None), effective_route(route)):
            for attribute in _TEMPLATES:
                template = getattr(node, attribute, None)
                if isinstance(template, str):
                    found.update(template_params(template))
            found.update(getattr(node, "param_convertors", None) or ())
        if depth >= _MAX_ROUTE_DEPTH:
            continue
        # A Mount's or Host's routes, and an included FastAPI router's own list (its
        # effective candidates are derived from it): a route added to any is noticed.
        included = getattr(route, "original_router", None)
        if isinstance(getattr(included, "_routes_version", None), int):
            version = _RoutesVersion(included)
            watched.append((version, len(version)))
        for owner in (route, included):
            # A mount's router below any middleware wrapping it, else the route's own list.
            own = mounted_routes(owner)
            if own is None:
                own = getattr(owner, "routes", None)
            if isinstance(own, list) and own is not routes:
                _scan(own, watched, found, depth + 1)
        candidates = getattr(route, "effective_candidates", None)
        if callable(candidates):  # a fresh list each time: watched through its router
            _scan(list(candidates()), watched, found, depth + 1, owned=False)
