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

from hardenkit._paths import route_path

__all__ = [
    "ENDPOINT_KEY",
    "JUDGED_KEY",
    "LATE_KEY",
    "LateCheck",
    "PathRecheck",
    "endpoint_reached",
    "judged_elsewhere",
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


async def run_late_checks(scope: Scope, send: Send, left_in: Scope | None = None) -> bool:
    """Run the checks left in ``left_in`` (``scope``) for ``scope``, in order.

    ``True`` when one refused (and answered).
    """
    for check in (scope if left_in is None else left_in).get(LATE_KEY, ()):
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


def judged_path(scope: Scope, layer: PathRecheck) -> None:
    """Note that ``layer`` judged this request on its path (every request: one append).

    Noted as the layer saw them: ``scope["path"]`` and ``scope["root_path"]``.
    """
    judged: list[tuple[PathRecheck, str, str]] | None = scope.get(JUDGED_KEY)
    note = (layer, scope.get("path", ""), scope.get("root_path", ""))
    if judged is None:
        scope[JUDGED_KEY] = [note]
    else:
        judged.append(note)


def judged_elsewhere(notes: Scope, path: object) -> bool:
    """Whether a layer noted in ``notes`` judged another ``scope["path"]`` than ``path``."""
    for note in notes.get(JUDGED_KEY, ()):  # noqa: SIM110 - no generator per request
        if note[1] != path:
            return True
    return False


def rechecked(notes: Scope, served: Callable[[str], str], app: ASGIApp) -> ASGIApp:
    """``app`` behind the checks of the path served, for every layer that judged another.

    The layers' notes are read from ``notes`` (a scope). ``served(root_path)`` is the
    path the router served, in the terms of a layer that judged below ``root_path`` (an
    app mounted inside another judges below its mount). Outermost layer first. A layer
    below the rewrite judged the path served already, and adds nothing.
    """
    judged: list[tuple[PathRecheck, str, str]] = notes.get(JUDGED_KEY) or []
    reached_below: dict[str, str] = {}
    for layer, full_path, root_path in reversed(judged):
        reached = reached_below.get(root_path)
        if reached is None:
            reached = reached_below[root_path] = served(root_path)
        path = route_path({"path": full_path, "root_path": root_path})
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
