"""What ``hardenkit.install()`` builds for authentication, from settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog
from starlette.middleware import Middleware

from hardenkit._parts import ReadinessCheck
from hardenkit.auth.apikeys import APIKeyGuard
from hardenkit.auth.middleware import AuthMiddleware, AuthMode
from hardenkit.auth.tenants import TenantResolver, TenantStatusCache
from hardenkit.auth.verifier import JWTVerifier
from hardenkit.errors import ConfigurationError
from hardenkit.health import CheckResult, HealthCheck, HealthStatus

if TYPE_CHECKING:
    from hardenkit._parts import Shared
    from hardenkit.auth.jwks import JWKSClient
    from hardenkit.settings import HardenSettings

__all__ = ["AuthPart", "AuthStack", "build_auth"]

_logger = structlog.get_logger("hardenkit.auth")


@dataclass(frozen=True, slots=True)
class AuthStack:
    """The authentication pieces :func:`hardenkit.install` built (``kit.auth``).

    Attributes:
        mode: ``enforced``, ``report_only`` or ``off``.
        verifier: The JWT verifier, ``None`` when no key source is configured (every
            protected request is then refused).
        tenant_status: Cached tenant activity; plug your resolver in with
            :meth:`use_tenant_resolver`.
        api_key_guard: The API-key guard for ``HARDENKIT_API_KEY_PATHS``, when set.
    """

    mode: AuthMode
    verifier: JWTVerifier | None
    tenant_status: TenantStatusCache
    api_key_guard: APIKeyGuard | None = None

    def use_tenant_resolver(self, resolver: TenantResolver | None) -> None:
        """Refuse tenants ``resolver`` says are inactive (answers cached with a TTL)."""
        self.tenant_status.use(resolver)


@dataclass(frozen=True, slots=True)
class AuthPart:
    """The auth layer, its readiness check (JWKS, when keys come from one) and its pieces."""

    middleware: Middleware
    stack: AuthStack
    checks: tuple[ReadinessCheck, ...] = ()


def build_auth(settings: HardenSettings, shared: Shared) -> AuthPart:
    """Build the verifier, JWKS client, tenant cache and API-key guard, and the auth layer.

    Raises:
        ConfigurationError: A key or algorithm setting is unusable (names the setting).
    """
    verifier: JWTVerifier | None = None
    has_key_source = (
        settings.jwt_secret is not None
        or settings.jwt_public_key is not None
        or settings.jwt_jwks_url is not None
    )
    if settings.auth_mode != "off" and not has_key_source:
        _logger.warning(
            "auth_no_key_source",
            message="every protected route answers 401 until a key source is set",
        )
    elif settings.auth_mode != "off":
        try:
            verifier = JWTVerifier.from_settings(settings)
        except ValueError as error:
            raise ConfigurationError(f"HARDENKIT_JWT_*: {error}") from None
    guard = APIKeyGuard.from_settings(settings) if settings.api_key_paths else None
    tenant_status = TenantStatusCache(
        ttl=settings.tenant_status_cache_ttl,
        redis=shared.redis if shared.guard is not None else None,
        guard=shared.guard if shared.redis is not None else None,
    )
    middleware = Middleware(
        AuthMiddleware,
        verifier=verifier,
        mode=settings.auth_mode,
        # The probes are public whatever HARDENKIT_PUBLIC_PATHS says: a list written
        # without them must not lock every pod out of readiness.
        public_paths=[*settings.public_paths, settings.health_path, settings.ready_path],
        tenant_header=settings.tenant_header,
        tenant_header_aliases=settings.tenant_header_aliases,
        tenant_path_params=settings.tenant_path_params,
        tenant_query_params=settings.tenant_query_params,
        max_header_bytes=settings.auth_max_header_bytes,
        tenant_status=tenant_status,
        api_key_guard=guard,
        api_key_paths=settings.api_key_paths,
    )
    checks: tuple[ReadinessCheck, ...] = ()
    if verifier is not None and verifier.jwks is not None:
        checks = (ReadinessCheck("jwks", _jwks_check(verifier.jwks), critical=False),)
    stack = AuthStack(
        mode=settings.auth_mode, verifier=verifier, tenant_status=tenant_status, api_key_guard=guard
    )
    return AuthPart(middleware=middleware, stack=stack, checks=checks)


def _jwks_check(jwks: JWKSClient) -> HealthCheck:
    async def check() -> CheckResult:
        if not jwks.loaded:
            await jwks.refresh()
        if jwks.loaded:
            return CheckResult(HealthStatus.HEALTHY, {"keys": len(jwks.kids)})
        return CheckResult(HealthStatus.UNHEALTHY, {"keys": 0})

    return check
