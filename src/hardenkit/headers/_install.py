"""How ``install()`` builds the headers, CORS and timeout layers from settings."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware

from hardenkit.headers._csp import CSP
from hardenkit.headers._middleware import SecurityHeadersMiddleware
from hardenkit.headers._policy import DEFAULT_API_CSP, DEFAULT_HTML_CSP, HeaderPolicy
from hardenkit.headers._presets import fastapi_docs_policy, fastapi_docs_routes
from hardenkit.headers._report import csp_report_route
from hardenkit.timeouts import TimeoutMiddleware

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from hardenkit.install import Hardened
    from hardenkit.settings import HardenSettings

__all__ = [
    "cors_layers",
    "install_headers",
    "policy_from_settings",
    "security_header_layers",
    "timeout_layers",
]


def policy_from_settings(settings: HardenSettings) -> HeaderPolicy:
    """Return the :class:`HeaderPolicy` the ``HARDENKIT_*`` header settings describe."""
    coep = settings.cross_origin_embedder_policy
    extra: dict[str, Any] = {}
    if settings.permissions_policy is not None:
        extra["permissions_policy"] = settings.permissions_policy
    return HeaderPolicy(
        html_csp=CSP.parse(settings.csp_html) if settings.csp_html else DEFAULT_HTML_CSP,
        api_csp=CSP.parse(settings.csp_api) if settings.csp_api else DEFAULT_API_CSP,
        csp_report_only=settings.csp_report_only,
        report_path=settings.csp_report_path,
        hsts_max_age=settings.hsts_max_age,
        hsts_include_subdomains=settings.hsts_include_subdomains,
        hsts_preload=settings.hsts_preload,
        frame_options=settings.frame_options,
        referrer_policy=settings.referrer_policy,
        cross_origin_opener_policy=settings.cross_origin_opener_policy,
        cross_origin_resource_policy=settings.cross_origin_resource_policy,
        cross_origin_embedder_policy=None if coep == "off" else coep,
        keep_app_headers=settings.security_headers_keep_app_values,
        **extra,
    )


def install_headers(app: Starlette, kit: Hardened) -> None:
    """Build the header policy (and the docs preset) and add the CSP report route."""
    settings = kit.settings
    kit.header_policy = policy_from_settings(settings)
    if settings.docs_csp_preset:
        kit.header_routes = fastapi_docs_routes(app, fastapi_docs_policy(kit.header_policy))
    if settings.csp_report_path is not None:
        route = csp_report_route(settings.csp_report_path, settings.csp_report_max_bytes)
        app.router.routes.insert(0, route)


def security_header_layers(kit: Hardened) -> list[Middleware]:
    """Return the security headers layer (empty when :func:`install_headers` did not run)."""
    if kit.header_policy is None:
        return []
    return [
        Middleware(SecurityHeadersMiddleware, policy=kit.header_policy, routes=kit.header_routes)
    ]


def cors_layers(settings: HardenSettings) -> list[Middleware]:
    """Return Starlette's CORS middleware for ``HARDENKIT_CORS_ORIGINS`` (none when empty)."""
    if not settings.cors_origins:
        return []
    extra_request_headers = [settings.request_id_header]
    tenant_header = getattr(settings, "tenant_header", None)
    if isinstance(tenant_header, str):
        extra_request_headers.append(tenant_header)
    return [
        Middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=list(settings.cors_allow_methods),
            allow_headers=_unique([*settings.cors_allow_headers, *extra_request_headers]),
            allow_credentials=settings.cors_allow_credentials,
            expose_headers=_unique([*settings.cors_expose_headers, settings.request_id_header]),
            max_age=settings.cors_max_age,
        )
    ]


def timeout_layers(settings: HardenSettings) -> list[Middleware]:
    """Return the request timeout layer."""
    return [
        Middleware(
            TimeoutMiddleware,
            timeout=settings.request_timeout,
            routes=dict(settings.request_timeout_routes),
            streaming_paths=list(settings.streaming_paths),
            status_code=settings.request_timeout_status,
        )
    ]


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, str] = {}
    for name in names:
        seen.setdefault(name.lower(), name)
    return list(seen.values())
