"""What ``install()`` builds for security headers: the policy, its layer, the report route."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.middleware import Middleware

from hardenkit.headers._csp import CSP
from hardenkit.headers._policy import DEFAULT_API_CSP, DEFAULT_HTML_CSP, HeaderPolicy
from hardenkit.headers._presets import fastapi_docs_policy, fastapi_docs_routes
from hardenkit.headers._report import csp_report_route
from hardenkit.headers.middleware import SecurityHeadersMiddleware

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.routing import BaseRoute

    from hardenkit.settings import HardenSettings

__all__ = ["HeadersPart", "build_headers", "policy_from_settings"]


@dataclass(frozen=True, slots=True)
class HeadersPart:
    """The security headers layer and what it was built from.

    Attributes:
        middleware: The :class:`SecurityHeadersMiddleware` layer.
        routes: The CSP report route, when ``HARDENKIT_CSP_REPORT_PATH`` is set.
        policy: The header policy the settings describe.
        route_policies: Path patterns with their own policy (FastAPI's docs pages).
    """

    middleware: Middleware
    policy: HeaderPolicy
    routes: tuple[BaseRoute, ...] = ()
    route_policies: dict[str, HeaderPolicy] = field(default_factory=dict)


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
        legacy_headers=settings.security_headers_legacy,
        **extra,
    )


def build_headers(settings: HardenSettings, app: Starlette) -> HeadersPart:
    """Build the header policy (and the docs preset for ``app``'s docs routes) and its layer."""
    policy = policy_from_settings(settings)
    route_policies = (
        fastapi_docs_routes(app, fastapi_docs_policy(policy)) if settings.docs_csp_preset else {}
    )
    routes: tuple[BaseRoute, ...] = ()
    if settings.csp_report_path is not None:
        routes = (csp_report_route(settings.csp_report_path, settings.csp_report_max_bytes),)
    return HeadersPart(
        middleware=Middleware(SecurityHeadersMiddleware, policy=policy, routes=route_policies),
        policy=policy,
        routes=routes,
        route_policies=route_policies,
    )
