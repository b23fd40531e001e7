"""``install(app)``: the recommended stack, wired in the right order.

Outermost first, as a request meets them::

    RequestIdMiddleware      id for every request, echoed on every response
    TrustedProxyMiddleware   real client ip and scheme, believing only trusted proxies
    RequestMetrics           request count and duration by route and status, 500s included
    SecurityHeaders          CSP with nonce, HSTS on https, ... on every response, 500s too
    CORS                     from HARDENKIT_CORS_ORIGINS: preflights answered before auth,
                             refusals (401, 429, 500, 504) readable by the calling page
    AppCheck                 the route rules of the production policy, on the first
                             request when no lifespan startup ran them (503 if refused)
    ErrorMiddleware          any crash becomes a 500 problem that reveals nothing
    TimeoutMiddleware        sets the request deadline; 504 problem when it passes
    BodyLimitMiddleware      bodies over HARDENKIT_MAX_BODY_BYTES: 413 before anything reads
    RateLimit per client ip  before auth: the default rule and the strict auth-path rule
    AuthMiddleware           JWT + tenant claim (or API key on its paths); 401/403
    RateLimit per tenant     after auth, keyed on the verified tenant
    WebhookMiddleware        signed webhooks on HARDENKIT_WEBHOOK_PATHS, replay refused
    RateLimit per webhook    verified deliveries only, per path (HARDENKIT_RATE_LIMIT_WEBHOOK)
    your application         exception handlers map HTTPException / validation errors

plus ``/healthz`` and ``/readyz``, always public and never rate limited. Every path
setting matches the route path (the path without ``root_path``), as Starlette routes. Every
piece stays usable alone as middleware.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import Route

from hardenkit._app_check import AppCheck, AppCheckMiddleware
from hardenkit._server_rewrite import ServerRewriteDetector
from hardenkit.auth._install import AuthStack, auth_middleware, build_auth
from hardenkit.bodylimit import BodyLimitMiddleware
from hardenkit.errors import (
    ConfigurationError,
    ErrorMiddleware,
    HardenError,
    harden_error_handler,
    http_exception_handler,
    set_problem_type_base,
    validation_exception_handler,
)
from hardenkit.headers._install import (
    cors_layers,
    install_headers,
    security_header_layers,
    timeout_layers,
)
from hardenkit.health import CheckResult, HealthCheck, HealthRegistry
from hardenkit.instances import InstanceRegistry, instances_key
from hardenkit.proxies import TrustedProxies, TrustedProxyMiddleware
from hardenkit.ratelimit._install import (
    client_ip_rate_limit,
    principal_rate_limit,
    webhook_rate_limit,
)
from hardenkit.requestid import RequestIdMiddleware
from hardenkit.resilience._install import install_resilience
from hardenkit.settings import HardenSettings, load_settings
from hardenkit.signing._install import install_signing, webhook_middleware
from hardenkit.stores import RedisGuard, create_redis
from hardenkit.telemetry import RequestMetricsMiddleware

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.cluster import RedisCluster

    from hardenkit.headers import HeaderPolicy
    from hardenkit.ratelimit.decision import RateLimitStore
    from hardenkit.signing import MessageVerifier, ReplayStore

__all__ = ["Hardened", "install"]

_logger = structlog.get_logger("hardenkit.install")


@dataclass(slots=True)
class Hardened:
    """What :func:`install` built, kept on ``app.state.hardenkit``.

    Attributes:
        settings: The validated settings in force.
        health: The readiness registry; add your own checks with ``health.add``.
        redis: The shared asyncio Redis client, or ``None`` when memory-only.
        redis_guard: The one switch between Redis and the memory fallback that every
            Redis-backed piece of this app shares (``None`` when memory-only); readiness
            reports it as the ``redis`` check.
        instances: This process's heartbeat in Redis and the live instances last
            counted (``None`` when memory-only); the rate-limit fallback's share.
        middleware: The layers installed, outermost first.
        header_policy: The security header policy built from the settings.
        header_routes: Path patterns with their own header policy (FastAPI's docs pages).
        rate_limit_store: The rate-limit store both rate-limit layers share (Redis
            through ``redis_guard``, or memory); pass it to ``RouteLimit(store=...)``.
        replay_store: Webhook ids and message nonces (Redis through ``redis_guard``, or
            memory); shared by the webhook middleware and ``message_verifier``.
        message_verifier: Verifies messages signed by ``HARDENKIT_MESSAGE_TRUSTED_KEYS``
            (``None`` when no key is trusted); use it as a dependency or call ``verify``.
        auth: The JWT verifier, tenant status cache and API-key guard the auth layer
            uses; ``kit.auth.use_tenant_resolver(...)`` plugs in a TenantResolver.
        server_rewrite: Whether the ASGI server rewrote the client address before
            hardenkit (uvicorn's proxy headers); readiness reports it as ``proxy_headers``.
        app_check: The production policy run against the app's routes (at install, at
            startup, or on the first request without a lifespan).
    """

    settings: HardenSettings
    health: HealthRegistry
    redis: Redis | RedisCluster | None = None
    redis_guard: RedisGuard | None = None
    instances: InstanceRegistry | None = None
    middleware: list[Middleware] = field(default_factory=list)
    header_policy: HeaderPolicy | None = None
    header_routes: dict[str, HeaderPolicy] = field(default_factory=dict)
    rate_limit_store: RateLimitStore | None = None
    replay_store: ReplayStore | None = None
    message_verifier: MessageVerifier | None = None
    auth: AuthStack | None = None
    server_rewrite: ServerRewriteDetector = field(default_factory=ServerRewriteDetector)
    app_check: AppCheck | None = None


def install(app: Starlette, settings: HardenSettings | None = None) -> Hardened:
    """Harden ``app`` (Starlette or FastAPI) with the recommended stack.

    Args:
        app: The application; call this before it starts serving.
        settings: Settings to use; read from the environment (and checked with
            :func:`hardenkit.settings.load_settings`) when omitted.

    Returns:
        The :class:`Hardened` handle, also stored on ``app.state.hardenkit``.

    Raises:
        SettingsError: The settings, or the routes the app has so far, are unsafe for the
            environment (names each variable); the routes are checked again when the app
            starts.
        ConfigurationError: ``install()`` already ran on this app.
    """
    if isinstance(getattr(app.state, "hardenkit", None), Hardened):
        # A second stack would run every layer twice: double rate-limit charges, two
        # request ids, auth on an already rewritten tenant header.
        raise ConfigurationError(
            "install() already ran on this app: call it once (app.state.hardenkit holds "
            "what it built)"
        )
    settings = load_settings() if settings is None else settings.raise_for_errors()
    for problem in settings.startup_warnings():
        _logger.warning("setting_warning", setting=problem.setting, message=problem.detail)
    app_check = AppCheck(app, settings)
    app_check.run_early()

    set_problem_type_base(settings.problem_type_base)
    kit = Hardened(
        settings=settings,
        health=HealthRegistry(timeout=settings.readiness_check_timeout),
        redis=create_redis(settings),
        app_check=app_check,
    )
    if kit.redis is not None:
        kit.redis_guard = RedisGuard(
            "redis",
            timeout=settings.redis_socket_timeout,
            retry_interval=settings.redis_retry_interval,
            failure_threshold=settings.redis_failure_threshold,
            ping=kit.redis.ping,
        )
        kit.instances = InstanceRegistry(
            kit.redis, kit.redis_guard, key=instances_key(settings.rate_limit_key_prefix)
        )
        kit.health.add("redis", _redis_check(kit.redis_guard, kit.instances))
    # Non-critical: a rewriting server is a misconfiguration to fix, not a reason to take
    # every instance out of rotation; readiness says "degraded" and names the fix.
    kit.health.add("proxy_headers", kit.server_rewrite.health_check, critical=False)
    install_signing(kit)
    install_headers(app, kit)
    install_resilience(app, kit)
    kit.auth = build_auth(kit)
    _install_error_handlers(app)
    _install_health_routes(app, kit)
    kit.middleware = _middleware_stack(kit)
    for layer in reversed(kit.middleware):
        app.add_middleware(layer.cls, *layer.args, **layer.kwargs)
    _close_redis_on_shutdown(app, kit)
    app.state.hardenkit = kit
    return kit


def _redis_check(guard: RedisGuard, instances: InstanceRegistry) -> HealthCheck:
    """Readiness of the shared guard, with how many instances share the stores."""

    async def check() -> CheckResult:
        result = await guard.health_check()
        return CheckResult(result.status, {**result.detail, "instances": instances.live_instances})

    return check


def _middleware_stack(kit: Hardened) -> list[Middleware]:
    """Return the layers outermost first."""
    settings = kit.settings
    proxies = TrustedProxies(settings.trusted_proxies, header=settings.forwarded_header)
    return [
        Middleware(
            RequestIdMiddleware,
            header_name=settings.request_id_header,
            trust=settings.request_id_trust,
            trusted_proxies=proxies,
        ),
        Middleware(TrustedProxyMiddleware, trusted_proxies=proxies, detector=kit.server_rewrite),
        # Outside the error layer, so the 500s it answers are counted (logs/telemetry issue).
        Middleware(RequestMetricsMiddleware),
        # Headers outside the error layer, so the 500 it answers carries them too; CORS
        # outside every layer that refuses, so preflights are answered before auth and
        # 401/429/500/504 stay readable by the calling page (docs/decisions.md).
        *security_header_layers(kit),
        *cors_layers(settings),
        # Before every layer that answers or refuses: an app the policy refuses (checked
        # here when no lifespan ran) answers 503 to every request, with headers.
        *([Middleware(AppCheckMiddleware, check=kit.app_check)] if kit.app_check else []),
        Middleware(ErrorMiddleware),
        *timeout_layers(settings),
        # Before anything that reads a body, and before auth: an unauthenticated 200 MB
        # POST is refused on its Content-Length, or as its stream crosses the limit.
        # Inside the timeout, so a body trickled in slowly still runs out of time.
        Middleware(
            BodyLimitMiddleware,
            max_body_bytes=settings.max_body_bytes,
            paths=dict(settings.max_body_bytes_paths),
        ),
        client_ip_rate_limit(kit),
        *auth_middleware(kit),
        principal_rate_limit(kit),
        *webhook_middleware(kit),
        # Inside the webhook layer: only deliveries whose signature verified are counted.
        *webhook_rate_limit(kit),
    ]


def _install_error_handlers(app: Starlette) -> None:
    app.add_exception_handler(HardenError, harden_error_handler)
    app.add_exception_handler(HTTPException, http_exception_handler)
    try:
        from fastapi.exceptions import RequestValidationError  # noqa: PLC0415 - optional
    except ImportError:  # pragma: no cover - FastAPI is an optional extra
        return
    app.add_exception_handler(RequestValidationError, validation_exception_handler)


def _install_health_routes(app: Starlette, kit: Hardened) -> None:
    health = kit.health
    routes = [
        Route(kit.settings.health_path, health.liveness, methods=["GET", "HEAD"]),
        Route(kit.settings.ready_path, health.readiness, methods=["GET", "HEAD"]),
    ]
    # First, so a catch-all mount of the application cannot shadow them.
    app.router.routes[0:0] = routes


def _close_redis_on_shutdown(app: Starlette, kit: Hardened) -> None:
    inner: Callable[[Any], AbstractAsyncContextManager[Any]] = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app_: Any) -> AsyncIterator[Any]:
        if kit.app_check is not None:
            # Every route exists now: a refusal here stops the server from starting.
            kit.app_check.run_final()
        if kit.redis_guard is not None:
            # Connection open and scripts loaded before the first request (warm start).
            await kit.redis_guard.warm_up()
        if kit.instances is not None:
            await kit.instances.beat()  # counted before the first request
            kit.instances.start()
        async with inner(app_) as state:
            try:
                yield state
            finally:
                if kit.instances is not None:
                    await kit.instances.aclose()
                if kit.redis is not None:
                    await kit.redis.aclose()

    app.router.lifespan_context = lifespan
