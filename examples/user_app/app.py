"""A small multi-tenant FastAPI service, as a user would write it (docs/testing.md tests it)."""

from __future__ import annotations

from fastapi import FastAPI

import hardenkit
from hardenkit.fastapi import CurrentPrincipal


def create_app(settings: hardenkit.HardenSettings | None = None) -> FastAPI:
    """Build the service; settings come from ``HARDENKIT_*`` variables when omitted."""
    app = FastAPI(title="orders")

    @app.get("/api/tenants/{tenant_id}/orders")
    async def list_orders(tenant_id: str, principal: CurrentPrincipal) -> dict[str, object]:
        # The auth layer already refused a token of another tenant (403 TENANT_MISMATCH).
        return {"tenant": tenant_id, "subject": principal.subject, "orders": []}

    @app.post("/auth/login")
    async def login() -> dict[str, str]:
        # Public (HARDENKIT_PUBLIC_PATHS) and under the strict per-ip auth limit.
        return {"status": "sent a magic link"}

    hardenkit.install(app, settings)  # last: after the routes and any middleware
    return app
