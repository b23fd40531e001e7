"""Which ``install()`` serves a request: found from the router that routed it.

Starlette's outermost router puts itself in ``scope["router"]`` and routers below it (a
mounted app's) leave it there, so the installed app's router names the installed app
however deep the request was routed. A route limit of an app mounted in two installed
apps (an app factory mounting one module-level sub-app) counts on the store of the app
that served the request, which ``app.state`` of the shared sub-app cannot tell.
"""

from __future__ import annotations

import weakref
from typing import Any

from starlette.types import Scope

__all__ = ["installed_kit", "register_kit"]

# By id, with a weak reference to tell the router is still the one: FastAPI's APIRouter
# is not hashable. An entry goes with its router.
_KITS: dict[int, tuple[weakref.ref[Any], Any]] = {}


def register_kit(router: Any, kit: Any) -> None:
    """Record that requests routed by ``router`` are served by the stack ``kit``."""
    key = id(router)
    _KITS[key] = (weakref.ref(router, lambda _: _KITS.pop(key, None)), kit)


def installed_kit(scope: Scope) -> Any:
    """The kit of the installed app whose router routed ``scope``; ``None`` if none did."""
    router = scope.get("router")
    entry = _KITS.get(id(router)) if router is not None else None
    if entry is None or entry[0]() is not router:
        return None
    return entry[1]
