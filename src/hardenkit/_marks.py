"""Route marks: ``public()`` and ``exempt()`` on an endpoint, honoured by the layers.

A mark is a name kept on the endpoint function (``hardenkit_marks``), so it travels with
the route however the app is assembled (``include_router``, ``Mount``). The layers run
before the router, so :class:`MarkedRoutes` finds the route that will serve a request
the way the router does: the first route whose path template and method match, over the
app's flattened routes (:func:`hardenkit._routes.iter_routes`). A request served by an
unmarked route is never treated as marked, even when a marked route's template would
also match its path.

Only an app with at least one marked route pays for the lookup; the route table is
rebuilt when the app's route list changes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from typing import Any, Final, TypeVar

from starlette.routing import compile_path
from starlette.types import Scope

from hardenkit._paths import route_path
from hardenkit._routes import RouteInfo, iter_routes

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
    __slots__ = ("marked", "methods", "pattern")

    def __init__(self, info: RouteInfo, mark: str) -> None:
        self.pattern: re.Pattern[str] = compile_path(info.path)[0]
        methods: Collection[str] | None = getattr(info.route, "methods", None)
        self.methods = frozenset(methods) if methods else None
        self.marked = mark in marks_of(info.endpoint)


class MarkedRoutes:
    """Whether the route serving a request carries ``mark``.

    Args:
        mark: :data:`PUBLIC` or :data:`EXEMPT`.
    """

    __slots__ = ("_routes", "_table", "mark")

    def __init__(self, mark: str) -> None:
        self.mark = mark
        self._routes: tuple[int, int] = (0, -1)  # (id, length) of the route list read
        self._table: tuple[_Entry, ...] = ()

    def matches(self, scope: Scope) -> bool:
        """Return whether the route that will serve ``scope`` is marked."""
        app = scope.get("app")
        routes = getattr(getattr(app, "router", None), "routes", None)
        if not routes:
            return False
        if (id(routes), len(routes)) != self._routes:
            self._table = self._build(app)
            self._routes = (id(routes), len(routes))
        if not self._table:
            return False
        path = route_path(scope)
        method: str = scope.get("method", "GET")
        for entry in self._table:
            if entry.pattern.match(path) and (entry.methods is None or method in entry.methods):
                return entry.marked
        return False

    def _build(self, app: Any) -> tuple[_Entry, ...]:
        entries = tuple(_Entry(info, self.mark) for info in iter_routes(app))
        return entries if any(entry.marked for entry in entries) else ()
