"""The verified caller as a FastAPI parameter: ``principal: CurrentPrincipal``."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from starlette.requests import Request

from hardenkit.auth import Principal, principal_of
from hardenkit.auth.authorization import authentication_required

__all__ = ["CurrentPrincipal", "OptionalPrincipal", "current_principal", "optional_principal"]


async def current_principal(request: Request) -> Principal:
    """Return the principal the auth layer verified; 401 where none was (a public route).

    Raises:
        HardenError: 401 ``AUTHENTICATION_ERROR`` with ``WWW-Authenticate: Bearer``.
    """
    principal = principal_of(request)
    if principal is None:
        raise authentication_required(request.url.path)
    return principal


# The OpenAPI document lists the 401 wherever this dependency is, public routes included.
current_principal.hardenkit_responses = (401,)  # type: ignore[attr-defined]


async def optional_principal(request: Request) -> Principal | None:
    """Return the verified principal, or ``None`` where no caller was verified.

    ``None`` in ``report_only`` mode for a request auth would refuse, with auth ``off``,
    and on every public route (they run without a token; production refuses ``@public()``
    on a route that asks for a principal).
    """
    return principal_of(request)


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]
"""The verified :class:`~hardenkit.auth.Principal`, never ``None`` (401 on a public route)."""

OptionalPrincipal = Annotated[Principal | None, Depends(optional_principal)]
"""The verified principal, or ``None`` where none was (``report_only``, auth ``off``).

Not for public routes, where it is always ``None`` (see :func:`optional_principal`).
"""
