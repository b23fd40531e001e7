"""Checks a layer before the endpoint left for a request it saw no principal for.

A layer that keys on the principal (the per-tenant rate limit) runs before routing, and
finds none for a request auth let through as public. When the endpoint then turns out to
be protected (a middleware inside the stack rewrote the path), auth authenticates the
request there (``hardenkit.auth._checkpoint``): the checks left here run then, with the
principal bound, before the handler. Kept in the scope (a list shared by its copies), so
neither side imports the other and each still works alone.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.types import Scope, Send

__all__ = ["LATE_KEY", "LateCheck", "leave_for_later", "run_late_checks"]

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
