"""Route marks: ``public()`` and ``exempt()`` on an endpoint, honoured by the layers.

A mark is a name kept on the endpoint function (``hardenkit_marks``), so it travels with
the route however the app is assembled (``include_router``, ``Mount``). The layers run
before the router, so :class:`MarkedRoutes` finds the route that will serve a request
the way the router does (:func:`hardenkit._routes.serving_route`: each route's own
``matches``, mounts and hosts descended into). A request served by anything else (an
unmarked route, a mounted app whose routes cannot be seen, a ``WebSocketRoute`` where the
marked route is HTTP, another host's routes, the router's 404) is never treated as
marked, even when a marked route's template would also match its path.

Only an app with at least one marked route pays for the lookup, and only for a request
whose path a marked route's template matches; the route table is rebuilt when the app's
route list changes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Sequence
from typing import Any, Final, TypeVar

from starlette.routing import compile_path
from starlette.types import Scope

from hardenkit._paths import route_path
from hardenkit._routes import RouteInfo, endpoint_of, iter_routes, route_lists, serving_route

__all__ = [
    "EXEMPT",
    "PUBLIC",
    "MarkedRoutes",
    "exempt",
    "is_limited_original",
    "mark_limited_original",
    "marks_of",
    "public",
]

PUBLIC: Final = "public"
EXEMPT: Final = "exempt"
_ATTRIBUTE = "hardenkit_marks"
_LIMITED_ORIGINAL = "hardenkit_limited_original"
_MAX_KNOWN = 1024
_STOCK_ROUTING = frozenset({"starlette.routing", "fastapi.routing"})

Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])


def _marker(name: str) -> Callable[[Endpoint], Endpoint]:
    def mark(endpoint: Endpoint) -> Endpoint:
        if not callable(endpoint):
            raise TypeError(f"@{name}() decorates an endpoint function")
        setattr(endpoint, _ATTRIBUTE, marks_of(endpoint) | {name})
        return endpoint

    return mark


def public() -> Callable[[Endpoint], Endpoint]:
    """Serve the decorated endpoint without credentials, as ``HARDENKIT_PUBLIC_PATHS`` would.

    The route is exactly as public as a path listed in ``HARDENKIT_PUBLIC_PATHS``: no
    token is read, no principal is set, and the production policy refuses it (risk
    ``public-route-protected``) when the route needs a verified caller (a tenant path
    parameter, a ``require_roles`` guard, a principal dependency). Put it below the route
    decorator (``@app.get(...)`` first, then ``@public()``).
    """
    return _marker(PUBLIC)


def exempt() -> Callable[[Endpoint], Endpoint]:
    """Keep the decorated endpoint out of the rate-limit layers' rules.

    The same as listing its path in ``HARDENKIT_RATE_LIMIT_EXEMPT_PATHS``: the per-ip,
    per-tenant and webhook rules skip it (a login or token route may not be exempt in
    production: risk ``login-route-unlimited``). Limits declared on the route itself
    (``hardenkit.fastapi.limit``) still apply.
    """
    return _marker(EXEMPT)


def marks_of(endpoint: object) -> frozenset[str]:
    """The marks on ``endpoint`` (none for an unmarked one)."""
    found: object = getattr(endpoint, _ATTRIBUTE, None)
    return frozenset(str(mark) for mark in found) if isinstance(found, frozenset) else frozenset()


def mark_limited_original(endpoint: object) -> None:
    """Mark the function a route limit wrapped (the wrapper, not it, must be the route's)."""
    setattr(endpoint, _LIMITED_ORIGINAL, True)


def is_limited_original(endpoint: object) -> bool:
    """Whether ``endpoint`` is a function a route limit wrapped: the limit is not on the route."""
    return getattr(endpoint, _LIMITED_ORIGINAL, False) is True


class _Entry:
    """A marked route's full template and methods: whether it could serve a request."""

    __slots__ = ("literal", "methods", "pattern")

    def __init__(self, info: RouteInfo, mark: str) -> None:
        self.pattern: re.Pattern[str] = compile_path(info.path)[0]
        # The template up to its first parameter: a path that does not start with it
        # cannot match, and checking that costs far less than the regex.
        self.literal = info.path.split("{", 1)[0]
        methods: Collection[str] | None = getattr(info.route, "methods", None)
        self.methods = frozenset(methods) if methods else None

    def accepts(self, path: str, method: str) -> bool:
        return (
            path.startswith(self.literal)
            and (self.methods is None or method in self.methods)
            and self.pattern.match(path) is not None
        )


class MarkedRoutes:
    """Whether the route serving a request carries ``mark``.

    A request is matched against the marked routes first (usually a handful): one that
    none of them accepts is served by an unmarked route, whatever the others are. Only
    when a marked route accepts it are the routes before that one checked, since one of
    them would serve it first.

    Args:
        mark: :data:`PUBLIC` or :data:`EXEMPT`.
    """

    __slots__ = ("_cacheable", "_known", "_marked", "_routes", "_watched", "mark")

    def __init__(self, mark: str) -> None:
        self.mark = mark
        self._routes: Sequence[Any] | None = None  # the route list the table was built from
        # Every route list below it, with its length: a route added to any rebuilds.
        self._watched: tuple[tuple[list[Any], int], ...] = ()
        # Whether every route matches as Starlette's and FastAPI's do (path, method, host):
        # a route class of the app's own may match on anything (a version header).
        self._cacheable = True
        # The marked routes' templates: a request none of them matches is not served by one.
        self._marked: tuple[_Entry, ...] = ()
        # Answers for requests a marked route's template matches, so the router's choice
        # is worked out once per request shape (bounded: paths are the client's choice).
        self._known: dict[tuple[str, str, str, bytes | None], bool] = {}

    def matches(self, scope: Scope) -> bool:
        """Return whether the route that will serve ``scope`` is marked."""
        app = scope.get("app")
        routes: Sequence[Any] | None = getattr(getattr(app, "router", None), "routes", None)
        if routes is None:
            return False  # not a Starlette app: no routes, no marks
        if routes is not self._routes or any(len(own) != n for own, n in self._watched):
            self._build(app, routes)
        if not self._marked:
            return False
        path = route_path(scope)
        method: str = scope.get("method", "GET")
        if not any(entry.accepts(path, method) for entry in self._marked):
            return False  # no marked route can serve it, whatever serves it
        # The Host header always: a Host route anywhere (under a Mount, in an included
        # router, behind middleware) makes the answer depend on it.
        if not self._cacheable:
            return self._served_marked(routes, scope)
        known_key = (scope["type"], method, path, _host(scope))
        known = self._known.get(known_key)
        if known is None:
            known = self._served_marked(routes, scope)
            if len(self._known) >= _MAX_KNOWN:
                self._known.clear()
            self._known[known_key] = known
        return known

    def _served_marked(self, routes: Sequence[Any], scope: Scope) -> bool:
        served = serving_route(routes, scope)
        return served is not None and self.mark in marks_of(endpoint_of(served[0]))

    def _build(self, app: Any, routes: Sequence[Any]) -> None:
        self._known.clear()
        self._routes = routes
        self._watched = route_lists(routes) if isinstance(routes, list) else ()
        self._cacheable = all(_stock_matching(route) for own, _ in self._watched for route in own)
        infos = list(iter_routes(app))
        self._marked = tuple(_Entry(info, self.mark) for info in infos if _marked(info, self.mark))


def _marked(info: RouteInfo, mark: str) -> bool:
    return mark in marks_of(info.endpoint)


def _stock_matching(route: Any) -> bool:
    """Whether ``route`` matches as Starlette's or FastAPI's routes do, on path, method, host."""
    matches = getattr(type(route), "matches", None)
    return getattr(matches, "__module__", None) in _STOCK_ROUTING


def _host(scope: Scope) -> bytes | None:
    for name, value in scope.get("headers", ()):
        if name == b"host":
            return bytes(value)
    return None
