"""Which ``install()`` serves a request: the stack marks the scope it passes on.

A route limit needs the store of the stack the request went through. ``app.state`` of
the app whose route it is cannot say: a mounted app has no ``install()`` of its own, and
one sub-app may be mounted in several installed apps (an app factory mounting a
module-level sub-app). Each installed stack writes its kit under :data:`INSTALLED_KEY`
as the request passes; the innermost one, the nearest to the route, is what is left.
"""

from __future__ import annotations

from typing import Any, Final

from starlette.types import Scope

__all__ = ["INSTALLED_KEY", "installed_kit"]

INSTALLED_KEY: Final = "hardenkit.installed"


def installed_kit(scope: Scope) -> Any:
    """The kit of the installed stack nearest to the route; ``None`` if none ran."""
    return scope.get(INSTALLED_KEY)
