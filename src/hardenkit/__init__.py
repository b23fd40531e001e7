"""hardenkit: production hardening for ASGI services in one import.

The public API is exactly what ``__all__`` lists; everything else is private.
"""

from typing import TYPE_CHECKING

from hardenkit._marks import exempt, public
from hardenkit._version import __version__
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
from hardenkit.bodylimit import BodyLimitMiddleware, read_body, read_json
from hardenkit.context import get_client_ip, get_deadline, get_principal, get_request_id
from hardenkit.errors import ErrorCode, ErrorMiddleware, HardenError, ProblemResponse
from hardenkit.headers import CSP, SecurityHeadersMiddleware, safe_redirect
from hardenkit.health import CheckResult, HealthRegistry, HealthStatus
from hardenkit.install import Hardened, install
from hardenkit.instances import InstanceRegistry
from hardenkit.logs import (
    AuditEvent,
    AuditEventType,
    RedactingLogFilter,
    RedactingProcessor,
    Redactor,
    audit,
    configure_logging,
    sentry_before_send,
)
from hardenkit.proxies import TrustedProxies, TrustedProxyMiddleware
from hardenkit.ratelimit import (
    MemoryStore,
    Rate,
    RateLimiter,
    RateLimitMiddleware,
    RateLimitRule,
    RedisStore,
)
from hardenkit.requestid import RequestIdMiddleware
from hardenkit.requestmetrics import RequestMetricsMiddleware
from hardenkit.resilience import (
    Bulkhead,
    BulkheadFullError,
    CircuitBreaker,
    CircuitOpenError,
    Retry,
    deadline,
    resilient,
)
from hardenkit.settings import HardenSettings, SettingsError, load_settings
from hardenkit.signing import (
    ReplayStore,
    ReplayStoreUnavailableError,
    WebhookMiddleware,
    WebhookVerifier,
    sign_message,
    sign_webhook,
    verify_message,
    verify_webhook,
)
from hardenkit.stores import RedisGuard
from hardenkit.timeouts import TimeoutMiddleware
from hardenkit.workcontext import WorkContext

__all__ = [
    "CSP",
    "APIKeyGuard",
    "AuditEvent",
    "AuditEventType",
    "AuthMiddleware",
    "BodyLimitMiddleware",
    "Bulkhead",
    "BulkheadFullError",
    "CheckResult",
    "CircuitBreaker",
    "CircuitOpenError",
    "ErrorCode",
    "ErrorMiddleware",
    "HardenError",
    "HardenSettings",
    "Hardened",
    "HealthRegistry",
    "HealthStatus",
    "InstanceRegistry",
    "JWKSClient",
    "JWTVerifier",
    "MemoryStore",
    "Principal",
    "ProblemResponse",
    "Rate",
    "RateLimitMiddleware",
    "RateLimitRule",
    "RateLimiter",
    "RedactingLogFilter",
    "RedactingProcessor",
    "Redactor",
    "RedisGuard",
    "RedisStore",
    "ReplayStore",
    "ReplayStoreUnavailableError",
    "RequestIdMiddleware",
    "RequestMetricsMiddleware",
    "ResilientTransport",
    "Retry",
    "SecurityHeadersMiddleware",
    "SettingsError",
    "TenantResolver",
    "TimeoutMiddleware",
    "TrustedProxies",
    "TrustedProxyMiddleware",
    "WebhookMiddleware",
    "WebhookVerifier",
    "WorkContext",
    "__version__",
    "audit",
    "configure_logging",
    "deadline",
    "exempt",
    "get_client_ip",
    "get_deadline",
    "get_principal",
    "get_request_id",
    "install",
    "load_settings",
    "public",
    "read_body",
    "read_json",
    "require_roles",
    "require_scopes",
    "resilient",
    "safe_redirect",
    "sentry_before_send",
    "sign_message",
    "sign_webhook",
    "verify_message",
    "verify_webhook",
]


# httpx is an optional extra, so ResilientTransport loads on first use.
if TYPE_CHECKING:
    from hardenkit.resilience.httpx import ResilientTransport


if not TYPE_CHECKING:
    # Hidden from type checkers: a module __getattr__ they can see types every unknown
    # name as its return type, so `from hardenkit import Typo` would pass mypy --strict.

    def __getattr__(name: str) -> object:
        if name == "ResilientTransport":
            from hardenkit.resilience.httpx import ResilientTransport  # noqa: PLC0415

            return ResilientTransport
        raise AttributeError(f"module 'hardenkit' has no attribute {name!r}")
