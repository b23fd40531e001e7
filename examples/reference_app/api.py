"""Authenticated routes: who am I, tenant-bound items, an admin-only page.

The auth middleware has verified the bearer token before any of these run; the tenant
they act for is the verified claim (a different ``X-Tenant-ID`` header or
``{tenant_id}`` in the path was already refused with 403 ``TENANT_MISMATCH``).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hardenkit import require_roles
from hardenkit.auth import Principal, principal_of
from hardenkit.errors import ErrorCode, HardenError
from hardenkit.install import Hardened

_ITEMS = {
    "acme": [{"id": "a-1", "name": "anvil"}, {"id": "a-2", "name": "rocket skates"}],
    "globex": [{"id": "g-1", "name": "doomsday device"}],
}


# The answers, shared with the FastAPI twin (fastapi_app.py): only the wiring differs.


def describe(principal: Principal) -> dict[str, Any]:
    """What ``/api/me`` answers: the verified principal."""
    return {
        "subject": principal.subject,
        "tenant": principal.tenant,
        "roles": sorted(principal.roles),
        "scopes": sorted(principal.scopes),
        "credential": principal.credential,
        "claims": dict(principal.claims),
    }


def items_of(principal: Principal) -> dict[str, Any]:
    """What ``/api/tenants/{tenant_id}/items`` answers for the principal's tenant."""
    if principal.tenant is None:
        raise HardenError(ErrorCode.AUTHENTICATION_ERROR, status=401)
    # principal.tenant, never the path: they are equal here, and the claim is the truth.
    return {"tenant": principal.tenant, "items": _ITEMS.get(principal.tenant, [])}


def stats_of(kit: Hardened) -> dict[str, Any]:
    """What ``/api/admin/stats`` answers."""
    verifier = kit.auth.verifier if kit.auth is not None else None
    return {
        "tenants": len(_ITEMS),
        "verified_tokens_cached": len(verifier.cache) if verifier is not None else 0,
    }


def _principal(request: Request) -> Principal:
    principal = principal_of(request)
    if principal is None:
        raise HardenError(ErrorCode.AUTHENTICATION_ERROR, status=401)
    return principal


async def me(request: Request) -> Response:
    return JSONResponse(describe(_principal(request)))


async def tenant_items(request: Request) -> Response:
    return JSONResponse(items_of(_principal(request)))


@require_roles("admin")
async def admin_stats(request: Request) -> Response:
    return JSONResponse(stats_of(request.app.state.hardenkit))


routes = [
    Route("/api/me", me),
    Route("/api/tenants/{tenant_id}/items", tenant_items),
    Route("/api/admin/stats", admin_stats),
]
