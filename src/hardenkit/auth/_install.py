"""What ``hardenkit.install()`` builds for authentication, from settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog

from hardenkit.auth.apikeys import APIKeyGuard
from hardenkit.auth.middleware import AuthMiddleware, AuthMode
from hardenkit.auth.tenants import TenantResolver, TenantStatusCache
from hardenkit.auth.verifier import JWTVerifier
from hardenkit.errors import ConfigurationError
from hardenkit.health import CheckResult, HealthStatus

if TYPE_CHECKING:
    from starlette.middleware import Middleware

    from hardenkit.install import Hardened

__all__ = ["AuthStack", "auth_middleware", "build_auth"]

_logger = structlog.get_logger("hardenkit.auth")


@dataclass(slots=True)
class AuthStack:
    """The authentication pieces :func:`hardenkit.install` built (``kit.auth``).

    Attributes:
        mode: ``enforced``, ``report_only`` or ``off``.
        verifier: The JWT verifier, ``None`` when no key source is configured (every
            protected request is then refused).
        tenant_status: Cached tenant activity; plug your resolver in with
            :meth:`use_tenant_resolver`.
        api_key_guard: The API-key guard for ``HARDENKIT_API_KEY_PATHS``, when set.
        middleware_options: Keyword arguments of the installed :class:`AuthMiddleware`.
    """

    mode: AuthMode
    verifier: JWTVerifier | None
    tenant_status: TenantStatusCache
    api_key_guard: APIKeyGuard | None = None
    middleware_options: dict[str, Any] = field(default_factory=dict)

    def use_tenant_resolver(self, resolver: TenantResolver | None) -> None:
        """Refuse tenants ``resolver`` says are inactive (answers cached with a TTL)."""
        self.tenant_status.use(resolver)


def build_auth(kit: Hardened) -> AuthStack:
    """Build the verifier, JWKS client, tenant cache and API-key guard from settings.

    Raises:
        ConfigurationError: A key or algorithm setting is unusable (names the setting).
    """
    settings = kit.settings
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
        redis=kit.redis if kit.redis_guard is not None else None,
        guard=kit.redis_guard if kit.redis is not None else None,
    )
    stack = AuthStack(
        mode=settings.auth_mode,
        verifier=verifier,
        tenant_status=tenant_status,
        api_key_guard=guard,
    )
    stack.middleware_options = {
        "verifier": verifier,
        "mode": settings.auth_mode,
        # The probes are public whatever HARDENKIT_PUBLIC_PATHS says: a list written
        # without them must not lock every pod out of readiness.
        "public_paths": [*settings.public_paths, settings.health_path, settings.ready_path],
        "tenant_header": settings.tenant_header,
        "tenant_header_aliases": settings.tenant_header_aliases,
        "tenant_path_params": settings.tenant_path_params,
        "tenant_query_params": settings.tenant_query_params,
        "max_header_bytes": settings.auth_max_header_bytes,
        "tenant_status": tenant_status,
        "api_key_guard": guard,
        "api_key_paths": settings.api_key_paths,
    }
    if verifier is not None and verifier.jwks is not None:
        jwks = verifier.jwks

        async def jwks_check() -> CheckResult:
            if not jwks.loaded:
                await jwks.refresh()
            if jwks.loaded:
                return CheckResult(HealthStatus.HEALTHY, {"keys": len(jwks.kids)})
            return CheckResult(HealthStatus.UNHEALTHY, {"keys": 0})

        kit.health.add("jwks", jwks_check, critical=False)
    return stack


def auth_middleware(kit: Hardened) -> list[Middleware]:
    """Return the auth layer for :func:`hardenkit.install`'s stack."""
    from starlette.middleware import Middleware  # noqa: PLC0415

    if kit.auth is None:
        return []
    return [Middleware(AuthMiddleware, **kit.auth.middleware_options)]
