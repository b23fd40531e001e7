"""Ready-made policies: FastAPI's interactive docs under a strict CSP."""

from __future__ import annotations

import dataclasses
from typing import Any, Final

from hardenkit.headers._csp import CSP
from hardenkit.headers._policy import HeaderPolicy

__all__ = ["DOCS_CDN_SOURCES", "fastapi_docs_policy", "fastapi_docs_routes"]

DOCS_CDN_SOURCES: Final = {
    "script": ("https://cdn.jsdelivr.net",),
    "style": ("https://cdn.jsdelivr.net", "https://fonts.googleapis.com"),
    "font": ("https://fonts.gstatic.com",),
    "img": ("https://fastapi.tiangolo.com", "https://cdn.jsdelivr.net", "https://cdn.redoc.ly"),
}
"""Where FastAPI's default ``/docs`` and ``/redoc`` pages load their assets from."""


def fastapi_docs_policy(
    base: HeaderPolicy | None = None,
    *,
    script_sources: tuple[str, ...] = DOCS_CDN_SOURCES["script"],
    style_sources: tuple[str, ...] = DOCS_CDN_SOURCES["style"],
    font_sources: tuple[str, ...] = DOCS_CDN_SOURCES["font"],
    img_sources: tuple[str, ...] = DOCS_CDN_SOURCES["img"],
) -> HeaderPolicy:
    """Return the policy under which FastAPI's Swagger UI and ReDoc pages render.

    Scripts: the page's own origin, the CDN the page names, and the page's inline
    scripts **by SHA-256 hash** of what the route served (no ``'unsafe-inline'``, no
    ``'unsafe-eval'``). That is safe because these pages are built from the app's
    configuration and reflect no request input; do not apply it to pages that do.
    Styles allow ``'unsafe-inline'``: ReDoc injects ``<style>`` elements at run time and
    Swagger UI sets inline styles; CSS cannot run code. ReDoc's search runs in a
    ``blob:`` worker. Everything else keeps the strict defaults of ``base``.

    Args:
        base: The policy to start from (the default policy when omitted).
        script_sources: Script origins; pass your own when you self-host the assets.
        style_sources: Stylesheet origins.
        font_sources: Font origins (ReDoc's Google Fonts).
        img_sources: Image origins (the favicon and logos).
    """
    base = base if base is not None else HeaderPolicy()
    csp = CSP(
        default_src=["'self'"],
        base_uri=["'self'"],
        form_action=["'self'"],
        frame_ancestors=["'none'"],
        object_src=["'none'"],
        script_src=["'self'", CSP.NONCE, *script_sources],
        style_src=["'self'", "'unsafe-inline'", *style_sources],
        img_src=["'self'", "data:", *img_sources],
        font_src=["'self'", *font_sources],
        connect_src=["'self'"],
        worker_src=["'self'", "blob:"],
        upgrade_insecure_requests=True,
    )
    return dataclasses.replace(base, html_csp=csp, hash_inline_scripts=True)


def fastapi_docs_routes(app: Any, policy: HeaderPolicy | None = None) -> dict[str, HeaderPolicy]:
    """Return the route map giving a FastAPI app's docs pages :func:`fastapi_docs_policy`.

    Reads ``docs_url``, ``redoc_url`` and ``swagger_ui_oauth2_redirect_url`` from the
    app (any of them may be ``None``); empty for an app without docs or not FastAPI.
    Use it as ``SecurityHeadersMiddleware(app, routes=fastapi_docs_routes(app))``;
    ``install()`` does this by itself (``HARDENKIT_DOCS_CSP_PRESET``).
    """
    if getattr(app, "openapi_url", None) is None:
        return {}
    docs_policy = policy if policy is not None else fastapi_docs_policy()
    paths = [getattr(app, "docs_url", None), getattr(app, "redoc_url", None)]
    if paths[0] is not None:
        paths.append(getattr(app, "swagger_ui_oauth2_redirect_url", None))
    return {path: docs_policy for path in paths if isinstance(path, str) and path}
