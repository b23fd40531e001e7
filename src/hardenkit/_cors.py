"""The CORS layer ``install()`` adds for ``HARDENKIT_CORS_ORIGINS``: Starlette's, configured.

The request id and tenant headers are always allowed, and the request id always exposed,
so a page can send and read them without listing them again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware

if TYPE_CHECKING:
    from hardenkit.settings import HardenSettings

__all__ = ["cors_layer"]


def cors_layer(settings: HardenSettings) -> Middleware | None:
    """Return Starlette's CORS middleware for ``HARDENKIT_CORS_ORIGINS`` (``None`` when empty)."""
    if not settings.cors_origins:
        return None
    return Middleware(
        CORSMiddleware,
        allow_origins=list(settings.cors_origins),
        allow_methods=list(settings.cors_allow_methods),
        allow_headers=_unique(
            [*settings.cors_allow_headers, settings.request_id_header, settings.tenant_header]
        ),
        allow_credentials=settings.cors_allow_credentials,
        expose_headers=_unique([*settings.cors_expose_headers, settings.request_id_header]),
        max_age=settings.cors_max_age,
    )


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, str] = {}
    for name in names:
        seen.setdefault(name.lower(), name)
    return list(seen.values())
