"""Checks the endpoint runs for what the layers before it could not judge.

Two cases. A layer that keys on the principal (the per-tenant rate limit) runs before
routing, and finds none for a request auth let through as public. When the endpoint then
turns out to be protected (a middleware inside the stack rewrote the path), auth authenticates the
request there (``hardenkit.auth._checkpoint``): the checks left here run then, with the
principal bound, before the handler. Kept in the scope (a list shared by its copies), so
neither side imports the other and each still works alone.

And a path rewritten inside the stack: every layer judged the path as sent, the router
served another. The endpoint asks each layer of the app's stack that judges paths
(:class:`PathRecheck`) for the checks the path served adds (:func:`rechecked`): a
webhook path's signature, a rate limit's rules for that path.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from starlette.types import ASGIApp, Scope, Send

__all__ = [
    "LATE_KEY",
    "LateCheck",
    "PathRecheck",
    "leave_for_later",
    "rechecked",
    "run_late_checks",
]

LATE_KEY = "hardenkit.late"

LateCheck = Callable[[Scope, Send], Awaitable[bool]]
"""Runs with the principal bound; answers the request itself and returns ``True`` to
refuse it, else returns ``False``."""


def leave_for_later(scope: Scope, check: LateCheck) -> None:
    """Leave ``check`` for the endpoint, should it authenticate this request itself."""
    checks: list[LateCheck] | None = scope.get(LATE_KEY)
    if checks is None:
        scope[LATE_KEY] = [check]
    else:
        checks.append(check)


async def run_late_checks(scope: Scope, send: Send) -> bool:
    """Run the checks left in ``scope``, in order; ``True`` when one refused (and answered)."""
    for check in scope.get(LATE_KEY, ()):
        if await check(scope, send):
            return True
    return False


class PathRecheck(Protocol):
    """A layer whose checks depend on the path, asked again when a rewrite changed it.

    A middleware inside the stack (added before ``install()``) that rewrites the path
    makes the router serve another path than the one every layer judged. The endpoint
    check (``hardenkit.auth._checkpoint``) sees the difference and asks each such layer
    of the app's stack for the checks the path reached adds to the path judged.
    """

    def recheck_path(self, judged: str, reached: str, app: ASGIApp) -> ASGIApp | None:
        """``app`` held to the checks ``reached`` has and ``judged`` had not, or ``None``.

        Both are route paths (below the app's root path).
        """
        ...  # pragma: no cover - a protocol


_MAX_STACK_DEPTH = 64


def rechecked(stack_app: object, judged: str, reached: str, app: ASGIApp) -> ASGIApp:
    """``app`` behind every check that ``stack_app``'s layers give ``reached`` anew.

    The layers are found by walking the app's middleware stack (each layer's ``app``),
    outermost first, and run in that order. Walked on each rewritten request only: a
    request whose path was not rewritten never comes here.
    """
    layers: list[PathRecheck] = []
    node = getattr(stack_app, "middleware_stack", None)
    for _ in range(_MAX_STACK_DEPTH):
        if node is None:
            break
        if callable(getattr(node, "recheck_path", None)):
            layers.append(node)
        node = getattr(node, "app", None)
    for layer in reversed(layers):
        wrapped = layer.recheck_path(judged, reached, app)
        if wrapped is not None:
            app = wrapped
    return app
