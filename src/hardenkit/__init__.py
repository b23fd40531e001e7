"""hardenkit: production hardening for ASGI services in one import.

The public API is exactly what ``__all__`` lists; everything else is private.
"""

from hardenkit._version import __version__
from hardenkit.context import get_client_ip, get_deadline, get_principal, get_request_id
from hardenkit.errors import ErrorCode, ErrorMiddleware, HardenError, ProblemResponse
from hardenkit.health import CheckResult, HealthRegistry, HealthStatus
from hardenkit.install import Hardened, install
from hardenkit.proxies import TrustedProxies, TrustedProxyMiddleware
from hardenkit.requestid import RequestIdMiddleware
from hardenkit.settings import HardenSettings, SettingsError, load_settings

# --- auth (issue 3) ---
from hardenkit.auth import (
    APIKeyGuard,
    AuthMiddleware,
    JWKSClient,
    JWTVerifier,
    Principal,
    TenantResolver,
    require_roles,
    require_scopes,
)
# --- rate limiting (issue 4) ---
# --- resilience (issue 5) ---
# --- headers and timeouts (issue 6) ---
from hardenkit.headers import CSP, SecurityHeadersMiddleware, safe_redirect
from hardenkit.timeouts import TimeoutMiddleware
# --- logs and telemetry (issue 7) ---
# --- signing (issue 9) ---
from hardenkit.signing import (
    ReplayStore,
    WebhookMiddleware,
    WebhookVerifier,
    sign_message,
    sign_webhook,
    verify_message,
    verify_webhook,
)
from hardenkit.stores import RedisGuard

__all__ = [
    "CSP",
    "APIKeyGuard",
    "AuthMiddleware",
    "CheckResult",
    "ErrorCode",
    "ErrorMiddleware",
    "HardenError",
    "HardenSettings",
    "Hardened",
    "HealthRegistry",
    "HealthStatus",
    "JWKSClient",
    "JWTVerifier",
    "Principal",
    "ProblemResponse",
    "RedisGuard",
    "ReplayStore",
    "RequestIdMiddleware",
    "SecurityHeadersMiddleware",
    "SettingsError",
    "TenantResolver",
    "TimeoutMiddleware",
    "TrustedProxies",
    "TrustedProxyMiddleware",
    "WebhookMiddleware",
    "WebhookVerifier",
    "__version__",
    "get_client_ip",
    "get_deadline",
    "get_principal",
    "get_request_id",
    "install",
    "load_settings",
    "require_roles",
    "require_scopes",
    "safe_redirect",
    "sign_message",
    "sign_webhook",
    "verify_message",
    "verify_webhook",
]
