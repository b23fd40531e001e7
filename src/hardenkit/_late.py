"""Checks the endpoint runs for what the layers before it could not judge.

Two cases. A layer that keys on the principal (the per-tenant rate limit) runs before
routing, and finds none for a request auth let through as public. When the endpoint
then turns out to be protected (a middleware inside the stack rewrote the path), auth
authenticates the request there (``hardenkit.auth._checkpoint``): the checks left here
run then, with the principal bound, before the handler. Kept in the scope (a list
shared by its copies), so neither side imports the other and each still works alone.

And a path rewritten inside the stack: the layers above the rewrite judged the path as
sent, the router served another. Each layer that judges paths (:class:`PathRecheck`)
notes the path it judged; the endpoint asks those that judged another path for the
checks the path served adds (:func:`rechecked`): a webhook path's signature, a rate
limit's rules for that path.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from starlette.types import ASGIApp, Scope, Send

__all__ = [
    "ENDPOINT_KEY",
    "JUDGED_KEY",
    "LATE_KEY",
    "LateCheck",
    "PathRecheck",
    "endpoint_reached",
    "judged_path",
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
    makes the router serve another path than the one the layers above it judged. Each
    such layer notes the path it judged (:func:`judged_path`); the endpoint check
    (``hardenkit.auth._checkpoint``) sees the difference and asks each layer that judged
    another path than the one served for the checks the path served adds.
    """

    def recheck_path(self, judged: str, reached: str, app: ASGIApp) -> ASGIApp | None:
        """``app`` held to the checks ``reached`` has and ``judged`` had not, or ``None``.

        Both are route paths (below the app's root path).
        """
        ...  # pragma: no cover - a protocol


JUDGED_KEY = "hardenkit.judged_paths"


def judged_path(scope: Scope, layer: PathRecheck, path: str) -> None:
    """Note that ``layer`` judged this request on ``path`` (every request: one append)."""
    judged: list[tuple[PathRecheck, str]] | None = scope.get(JUDGED_KEY)
    if judged is None:
        scope[JUDGED_KEY] = [(layer, path)]
    else:
        judged.append((layer, path))


def rechecked(scope: Scope, reached: str, app: ASGIApp) -> ASGIApp:
    """``app`` behind the checks ``reached`` adds for every layer that judged another path.

    Outermost layer first. A layer below the rewrite judged ``reached`` already, and adds
    nothing; one that never saw the request (another app's) is not asked.
    """
    judged: list[tuple[PathRecheck, str]] = scope.get(JUDGED_KEY) or []
    for layer, path in reversed(judged):
        if path != reached:
            wrapped = layer.recheck_path(path, reached, app)
            if wrapped is not None:
                app = wrapped
    return app


ENDPOINT_KEY = "hardenkit.endpoint_reached"
"""A one-element list a layer puts in the scope to learn whether an endpoint ran: the
endpoint check (``hardenkit.auth._checkpoint``) sets it. The webhook layer tells a
redirect or a 404 the router answered (nothing was processed) from a handler's."""


def endpoint_reached(scope: Scope) -> None:
    """Say, to a layer that asked (:data:`ENDPOINT_KEY`), that an endpoint runs now."""
    reached: list[bool] | None = scope.get(ENDPOINT_KEY)
    if reached is not None:
        reached[0] = True
