"""Security headers: CSP with a per-request nonce, HSTS, framing, isolation, redirects.

``SecurityHeadersMiddleware`` gives every HTTP response the headers of a
:class:`HeaderPolicy`, chosen per kind (HTML or API) and per scheme (HSTS only over
https). :class:`CSP` builds and validates Content-Security-Policies; presets cover
FastAPI's docs; routes may choose their own policy; :func:`safe_redirect` follows
untrusted redirect targets only to allowed hosts. See docs/headers.md.
"""

from hardenkit.headers._csp import CSP, CSPError
from hardenkit.headers._nonce import csp_nonce_context, get_csp_nonce, set_header_policy
from hardenkit.headers._overrides import header_policy, header_policy_dependency
from hardenkit.headers._policy import (
    DEFAULT_API_CSP,
    DEFAULT_HTML_CSP,
    DEFAULT_PERMISSIONS_POLICY,
    LEAKING_HEADERS,
    HeaderPolicy,
)
from hardenkit.headers._presets import fastapi_docs_policy, fastapi_docs_routes
from hardenkit.headers._redirect import is_safe_redirect, safe_redirect
from hardenkit.headers._report import csp_report_endpoint, csp_report_route
from hardenkit.headers.middleware import SecurityHeadersMiddleware

__all__ = [
    "CSP",
    "DEFAULT_API_CSP",
    "DEFAULT_HTML_CSP",
    "DEFAULT_PERMISSIONS_POLICY",
    "LEAKING_HEADERS",
    "CSPError",
    "HeaderPolicy",
    "SecurityHeadersMiddleware",
    "csp_nonce_context",
    "csp_report_endpoint",
    "csp_report_route",
    "fastapi_docs_policy",
    "fastapi_docs_routes",
    "get_csp_nonce",
    "header_policy",
    "header_policy_dependency",
    "is_safe_redirect",
    "safe_redirect",
    "set_header_policy",
]
