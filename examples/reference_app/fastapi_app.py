"""The reference service as a FastAPI app: the same routes, wired with dependencies.

``hardenkit.install(app, settings)`` is the same call as for the Starlette app
(:mod:`examples.reference_app.app`), with the same demo settings. What FastAPI adds,
from :mod:`hardenkit.fastapi`, with no code of the app's own:

- the verified caller arrives as a parameter: ``principal: CurrentPrincipal`` (never
  ``None``), or ``Depends(require_roles("admin"))``, which refuses with 403 and returns it;
- per-route limits on the app's store (``@limit("2/minute", key=keys.tenant)``), listed
  next to the stack's own in the ``RateLimit`` headers;
- an OpenAPI document that tells the truth: the bearer scheme on every protected route,
  401/403/413/422/429/504 as the problem+json bodies the app really sends;
- ``/docs`` and ``/redoc`` render under the strict CSP: ``install()`` gives exactly these
  pages the FastAPI docs preset (scripts allowed by hash, never ``'unsafe-inline'``).

The auth middleware has already refused a missing, bad or tenant-mismatched token before
any dependency runs; the dependencies only hand the verified result to the handler.
The handlers' answers are :mod:`examples.reference_app.api`'s, shared with the Starlette
app; the other pieces' routes are reused as they are.

    uvicorn examples.reference_app.fastapi_app:app --port 8000 --no-server-header
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from pydantic import BaseModel, Field
from starlette.routing import BaseRoute, Route

from examples.reference_app import api, home, logging_demo, slow, token, upstream, webhooks
from examples.reference_app.settings import FASTAPI_DEMO_DEFAULTS, demo_settings
from hardenkit import HardenSettings, configure_logging, install
from hardenkit.auth import Principal
from hardenkit.fastapi import CurrentPrincipal, limit, problem_responses, require_roles
from hardenkit.ratelimit import keys

__all__ = ["CurrentPrincipal", "create_app"]

Admin = Annotated[Principal, Depends(require_roles("admin"))]

router = APIRouter(prefix="/api", tags=["tenant API"])


class Note(BaseModel):
    """A note to keep for the caller's tenant."""

    text: str = Field(min_length=1, max_length=200)


@router.get("/me")
async def me(principal: CurrentPrincipal) -> dict[str, Any]:
    """Who the bearer token says the caller is."""
    return api.describe(principal)


@router.get("/tenants/{tenant_id}/items")
async def tenant_items(tenant_id: str, principal: CurrentPrincipal) -> dict[str, Any]:
    """The items of ``tenant_id``, which must be the token's tenant (else 403)."""
    return api.items_of(principal)


@router.post("/tenants/{tenant_id}/notes", status_code=201)
@limit("2/minute", key=keys.tenant)
async def add_note(tenant_id: str, note: Note, principal: CurrentPrincipal) -> dict[str, Any]:
    """Keep a note (twice a minute per tenant): 422 for a bad body, 429 past the limit."""
    return {"tenant": principal.tenant, "text": note.text}


@router.get("/admin/stats")
async def admin_stats(request: Request, principal: Admin) -> dict[str, Any]:
    """Admin only: 403 ``AUTHORIZATION_ERROR`` without the ``admin`` role."""
    return api.stats_of(request.app.state.hardenkit)


def _api_routes(
    app: FastAPI, routes: Iterable[BaseRoute], tag: str, *, answers: tuple[int, ...] = ()
) -> None:
    """Serve the Starlette app's handlers as they are, listed in the OpenAPI document.

    ``answers``: the problem statuses the handlers themselves raise (the stack's own are
    documented by ``install()``).
    """
    for route in routes:
        assert isinstance(route, Route)  # noqa: S101 - the example modules hold plain Routes
        methods = sorted((route.methods or {"GET"}) - {"HEAD"})
        app.add_api_route(
            route.path,
            route.endpoint,
            methods=methods,
            tags=[tag],
            responses=problem_responses(*answers),
        )


def create_app(settings: HardenSettings | None = None) -> FastAPI:
    """Build the FastAPI reference app (demo settings from the environment if omitted)."""
    settings = settings or demo_settings(defaults=FASTAPI_DEMO_DEFAULTS)
    configure_logging(settings)
    app = FastAPI(
        title="hardenkit reference app",
        summary="The Starlette reference app's routes, as FastAPI dependencies.",
        routes=list(home.routes),  # an HTML page, not part of the API document
    )
    _api_routes(app, token.routes, "demo login", answers=(400, 401, 404))
    app.include_router(router)
    _api_routes(app, slow.routes, "timeouts")
    _api_routes(app, upstream.routes, "resilience")
    _api_routes(app, webhooks.routes, "signed traffic")
    _api_routes(app, logging_demo.routes, "redaction")
    # After the routes: install() reads docs_url/redoc_url for the docs CSP preset.
    install(app, settings)
    return app


def __getattr__(name: str) -> FastAPI:
    # As in app.py: `uvicorn examples.reference_app.fastapi_app:app` builds it on access.
    if name == "app":
        application = create_app()
        globals()["app"] = application
        return application
    raise AttributeError(name)
