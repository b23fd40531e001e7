"""FastAPI-native hardenkit: the verified caller, route limits and marks as dependencies.

Needs the ``fastapi`` extra (``pip install "hardenkit[fastapi]"``). Everything here works
on an app hardened with :func:`hardenkit.install`, which also makes the app's OpenAPI
document tell the truth about its errors (see docs/fastapi.md)::

    from hardenkit.fastapi import CurrentPrincipal, limit, public, require_roles

    @app.get("/me")
    async def me(principal: CurrentPrincipal) -> dict[str, str]: ...
"""

from hardenkit._marks import exempt, public
from hardenkit.auth import require_roles, require_scopes
from hardenkit.fastapi._limits import Limit, RateFunction, limit
from hardenkit.fastapi._principals import (
    CurrentPrincipal,
    OptionalPrincipal,
    current_principal,
    optional_principal,
)
from hardenkit.fastapi._responses import problem_responses

__all__ = [
    "CurrentPrincipal",
    "Limit",
    "OptionalPrincipal",
    "RateFunction",
    "current_principal",
    "exempt",
    "limit",
    "optional_principal",
    "problem_responses",
    "public",
    "require_roles",
    "require_scopes",
]
