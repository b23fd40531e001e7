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

plus ``/healthz`` and ``/readyz``, always public and never rate limited, and (FastAPI) an
OpenAPI document that lists the problem+json answers of these layers. Every path
setting matches the route path (the path without ``root_path``), as Starlette routes. Every
piece stays usable alone as middleware.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Route

from hardenkit._app_check import AppCheck, AppCheckMiddleware
from hardenkit._cors import cors_layer
from hardenkit._openapi import document_errors
from hardenkit._parts import ReadinessCheck, Shared
from hardenkit._routes import mounted_apps
from hardenkit._server_rewrite import ServerRewriteDetector
from hardenkit.auth._install import AuthPart, AuthStack, build_auth
from hardenkit.bodylimit import body_limit_layer
from hardenkit.errors import (
    ConfigurationError,
    ErrorMiddleware,
    HardenError,
    harden_error_handler,
    http_exception_handler,
    set_problem_type_base,
    validation_exception_handler,
)
from hardenkit.headers._install import HeadersPart, build_headers
from hardenkit.health import CheckResult, HealthCheck, HealthRegistry, HealthStatus
from hardenkit.instances import InstanceRegistry, instances_key
from hardenkit.logs.setup import structlog_redacts
from hardenkit.proxies import TrustedProxies, TrustedProxyMiddleware
from hardenkit.ratelimit._install import RateLimitPart, build_rate_limits
from hardenkit.ratelimit.redis_store import epoch_for
from hardenkit.requestid import RequestIdMiddleware
from hardenkit.requestmetrics import RequestMetricsMiddleware
from hardenkit.resilience._install import build_resilience
from hardenkit.settings import HardenSettings, load_settings, refuse_unsafe
from hardenkit.signing._install import SigningPart, build_signing
from hardenkit.stores import RedisGuard, create_redis
from hardenkit.timeouts import timeout_layer

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.cluster import RedisCluster

    from hardenkit.headers import HeaderPolicy
    from hardenkit.ratelimit.decision import RateLimitStore
    from hardenkit.signing import MessageVerifier, ReplayStore

__all__ = ["Hardened", "install"]

_logger = structlog.get_logger("hardenkit.install")


@dataclass(frozen=True, slots=True)
class Hardened:
    """What :func:`install` built, kept on ``app.state.hardenkit``; built once, never changed.

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
        rate_limit_store: The rate-limit store every rate-limit layer shares (Redis
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


@dataclass(frozen=True, slots=True)
class _Parts:
    """Every feature's part, each built from the settings and the shared pieces alone."""

    headers: HeadersPart
    signing: SigningPart
    auth: AuthPart
    rate_limits: RateLimitPart
    checks: tuple[ReadinessCheck, ...]


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
    # Refused when unsafe (recorded instead while `hardenkit doctor --app` imports it).
    settings = load_settings() if settings is None else refuse_unsafe(settings)
    for problem in settings.startup_warnings():
        _logger.warning("setting_warning", setting=problem.setting, message=problem.detail)
    if settings.is_production and not structlog_redacts():
        # install() leaves logging to the app (docs/logging.md): said here, where a
        # quickstart without configure_logging() would otherwise log secrets in clear.
        _logger.warning(
            "logging_not_redacted",
            message="log lines are not redacted: tokens, passwords and keys are written "
            "as they are, and HARDENKIT_LOG_* settings do nothing",
            fix="call hardenkit.configure_logging() before install(), or add "
            "hardenkit.logs.RedactingProcessor to your structlog processors",
        )
    app_check = AppCheck(app, settings)
    app_check.run_early()

    set_problem_type_base(settings.problem_type_base)
    shared = _shared(settings)
    if shared.redis is None and not settings.is_production:
        # Production warns (a setting problem); here it is said once, as a fact: a user
        # running `uvicorn --workers 2` in development saw a limit of 3 admit 4.
        _logger.info(
            "stores_per_process",
            setting="HARDENKIT_REDIS_URL",
            message="unset: rate limits (the login limit too) and replay protection are "
            "kept in this process's memory; each worker or instance admits the whole limit",
        )
    server_rewrite = ServerRewriteDetector()
    parts = _build_parts(app, settings, shared)
    health = HealthRegistry(timeout=settings.readiness_check_timeout)
    # An instance not yet counted by the others refuses in an outage with the auto share.
    share, when_down = settings.rate_limit_fallback_share, settings.rate_limit_redis_down
    refuses_uncounted = share == "auto" and when_down == "fallback"
    for check in _core_checks(shared, server_rewrite, refuses_uncounted) + parts.checks:
        health.add(check.name, check.check, critical=check.critical)
    kit = Hardened(
        settings=settings,
        health=health,
        redis=shared.redis,
        redis_guard=shared.guard,
        instances=shared.instances,
        middleware=_middleware_stack(settings, parts, server_rewrite, app_check),
        header_policy=parts.headers.policy,
        header_routes=parts.headers.route_policies,
        rate_limit_store=parts.rate_limits.store,
        replay_store=parts.signing.replay_store,
        message_verifier=parts.signing.message_verifier,
        auth=parts.auth.stack,
        server_rewrite=server_rewrite,
        app_check=app_check,
    )
    _install_error_handlers(app)
    app_check.kit = kit  # marks each request's scope (hardenkit._installed)
    _adopt_mounted_apps(app, kit)
    app_check.on_complete(lambda: _adopt_mounted_apps(app, kit))  # mounted after install()
    _install_routes(app, settings, health, parts.headers.routes)
    # FastAPI: the OpenAPI document lists what the layers answer, as problem+json.
    document_errors(app, settings)
    for layer in reversed(kit.middleware):
        app.add_middleware(layer.cls, *layer.args, **layer.kwargs)
    _wrap_lifespan(app, kit)
    app.state.hardenkit = kit
    return kit


def _shared(settings: HardenSettings) -> Shared:
    """The Redis client, its one guard and the instance registry (none when memory-only)."""
    redis = create_redis(settings)
    if redis is None:
        return Shared()
    guard = RedisGuard(
        "redis",
        timeout=settings.redis_socket_timeout,
        retry_interval=settings.redis_retry_interval,
        failure_threshold=settings.redis_failure_threshold,
        ping=redis.ping,
    )
    prefix = settings.rate_limit_key_prefix
    epoch = epoch_for(redis, prefix)  # the store's (gcra.lua), recreated by the heartbeat
    instances = InstanceRegistry(redis, guard, key=instances_key(prefix), epoch=epoch)
    return Shared(redis=redis, guard=guard, instances=instances)


def _build_parts(app: Starlette, settings: HardenSettings, shared: Shared) -> _Parts:
    signing = build_signing(settings, shared)
    headers = build_headers(settings, app)
    resilience = build_resilience(settings, shared)
    auth = build_auth(settings, shared)
    rate_limits = build_rate_limits(settings, shared)
    return _Parts(
        headers=headers,
        signing=signing,
        auth=auth,
        rate_limits=rate_limits,
        checks=signing.checks + resilience.checks + auth.checks + rate_limits.checks,
    )


def _core_checks(
    shared: Shared, server_rewrite: ServerRewriteDetector, refuses_uncounted: bool
) -> tuple[ReadinessCheck, ...]:
    redis: tuple[ReadinessCheck, ...] = ()
    if shared.guard is not None and shared.instances is not None:
        check = _redis_check(shared.guard, shared.instances, refuses_uncounted=refuses_uncounted)
        redis = (ReadinessCheck("redis", check),)
    # Non-critical: a rewriting server is a misconfiguration to fix, not a reason to take
    # every instance out of rotation; readiness says "degraded" and names the fix.
    return (
        *redis,
        ReadinessCheck("proxy_headers", server_rewrite.health_check, critical=False),
    )


def _redis_check(
    guard: RedisGuard, instances: InstanceRegistry, *, refuses_uncounted: bool
) -> HealthCheck:
    """Readiness of the shared guard, with how many instances share the stores.

    Unhealthy while Redis never answered this process (its fallback refuses every limited
    request). When the others did not count it yet as Redis went (``auto`` share,
    ``fallback`` while down), its fallback refuses too: ``refusing_limited_requests``.
    """

    async def check() -> CheckResult:
        result = await guard.health_check()
        known = instances.answered  # None: Redis never answered a heartbeat yet
        counts = {
            "instances": instances.measured_instances if known else None,
            "instances_for_fallback_share": instances.live_instances if known else None,
            "counted_by_others": instances.counted,  # until then its fallback refuses
        }
        status = result.status
        if status is HealthStatus.DEGRADED and not known:
            # Redis never answered this process: a wrong CA, sentinel master or URL
            # until shown otherwise, and its fallback refuses every limited request
            # (503). Not ready, so a rollout with such settings stops at its first pod.
            status = HealthStatus.UNHEALTHY
            counts["never_answered"] = True
        elif status is HealthStatus.DEGRADED and refuses_uncounted and not instances.counted:
            # Redis was lost before the other instances counted this one: its fallback
            # refuses every limited request (503) until Redis is back. Said, not made
            # unready: after a long outage with Redis restarted empty every instance is
            # uncounted for a few seconds, and a second drop then would take a whole
            # serving fleet (exempt routes, `open` limits) out of rotation at once.
            counts["refusing_limited_requests"] = True
        return CheckResult(status, {**result.detail, **counts})

    return check


def _middleware_stack(
    settings: HardenSettings,
    parts: _Parts,
    server_rewrite: ServerRewriteDetector,
    app_check: AppCheck,
) -> list[Middleware]:
    """Return the layers outermost first."""
    proxies = TrustedProxies(settings.trusted_proxies, header=settings.forwarded_header)
    layers: list[Middleware | None] = [
        Middleware(
            RequestIdMiddleware,
            header_name=settings.request_id_header,
            trust=settings.request_id_trust,
            trusted_proxies=proxies,
        ),
        Middleware(TrustedProxyMiddleware, trusted_proxies=proxies, detector=server_rewrite),
        # Outside the error layer, so the 500s it answers are counted.
        Middleware(RequestMetricsMiddleware),
        # Headers outside the error layer, so the 500 it answers carries them too; CORS
        # outside every layer that refuses, so preflights are answered before auth and
        # 401/429/500/504 stay readable by the calling page (docs/decisions.md).
        parts.headers.middleware,
        cors_layer(settings),
        # Before every layer that answers or refuses: an app the policy refuses (checked
        # here when no lifespan ran) answers 503 to every request, with headers.
        Middleware(AppCheckMiddleware, check=app_check),
        Middleware(ErrorMiddleware),
        timeout_layer(settings),
        # Before anything that reads a body, and before auth: an unauthenticated 200 MB
        # POST is refused on its Content-Length, or as its stream crosses the limit.
        # Inside the timeout, so a body trickled in slowly still runs out of time.
        body_limit_layer(settings),
        parts.rate_limits.client_ip,
        parts.auth.middleware,
        parts.rate_limits.tenant,
        parts.signing.middleware,
        # Inside the webhook layer: only deliveries whose signature verified are counted.
        parts.rate_limits.webhook,
    ]
    return [layer for layer in layers if layer is not None]


def _adopt_mounted_apps(app: Starlette, kit: Hardened) -> None:
    """Let the Starlette and FastAPI apps mounted in ``app`` work as part of its stack.

    A mounted app has its own exception handlers and error middleware, inside the
    stack's: without this, its ``HTTPException`` and ``422`` came out in FastAPI's shape
    (a 422 echoing the rejected input), its crashes as ``text/plain`` 500s (with
    ``debug=True``, a traceback holding the exception's message). It gets the stack's
    handlers where it kept FastAPI's defaults (its own are kept), hands unexpected
    exceptions on to the stack's error layer (unless it has a handler of its own for
    them), and its debug page is turned off, as the stack's error layer turns off the
    installed app's. Its ``limit()``s find the stack the request went through
    (:mod:`hardenkit._installed`). An app with an ``install()`` of its own is left alone.
    Runs before any request reaches it.
    """
    for mounted in mounted_apps(app):
        if isinstance(getattr(mounted.state, "hardenkit", None), Hardened):
            continue
        _install_error_handlers(mounted, keep_own=True)
        if Exception not in mounted.exception_handlers and 500 not in mounted.exception_handlers:
            mounted.add_exception_handler(Exception, _hand_on)
        # Its debug traceback would answer before the stack's error layer, secrets and all.
        mounted.debug = False


async def _hand_on(request: Any, exc: Exception) -> Any:
    """A mounted app's crash: raised on, so the stack's error layer answers and logs it."""
    raise exc


def _install_error_handlers(app: Starlette, *, keep_own: bool = False) -> None:
    """The stack's handlers; ``keep_own``: only where ``app`` has none, or FastAPI's own."""
    handlers: list[tuple[type[Exception], Any]] = [
        (HardenError, harden_error_handler),
        (HTTPException, http_exception_handler),
    ]
    defaults: tuple[Any, ...] = ()
    try:
        from fastapi import exception_handlers  # noqa: PLC0415 - optional
        from fastapi.exceptions import RequestValidationError  # noqa: PLC0415 - optional
    except ImportError:  # pragma: no cover - FastAPI is an optional extra
        pass
    else:
        handlers.append((RequestValidationError, validation_exception_handler))
        defaults = (
            exception_handlers.http_exception_handler,
            exception_handlers.request_validation_exception_handler,
        )
    for exception, handler in handlers:
        current = app.exception_handlers.get(exception)
        if not keep_own or current is None or current in defaults:
            app.add_exception_handler(exception, handler)


def _install_routes(
    app: Starlette, settings: HardenSettings, health: HealthRegistry, routes: tuple[BaseRoute, ...]
) -> None:
    probes = [
        Route(settings.health_path, health.liveness, methods=["GET", "HEAD"]),
        Route(settings.ready_path, health.readiness, methods=["GET", "HEAD"]),
    ]
    # First, so a catch-all mount of the application cannot shadow them.
    app.router.routes[0:0] = [*probes, *routes]


def _wrap_lifespan(app: Starlette, kit: Hardened) -> None:
    inner: Callable[[Any], AbstractAsyncContextManager[Any]] = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app_: Any) -> AsyncIterator[Any]:
        _require_asyncio()
        if kit.app_check is not None:
            # What is already wrong, before the app's own startup runs.
            kit.app_check.run_early()
        if kit.redis_guard is not None:
            # Connection open and scripts loaded before the first request (warm start).
            await kit.redis_guard.warm_up()
        try:
            if kit.instances is not None:
                await kit.instances.beat()  # counted before the first request
                kit.instances.start()
            async with AsyncExitStack() as app_lifespan:
                state = await app_lifespan.enter_async_context(inner(app_))
                try:
                    if kit.app_check is not None:
                        # Every route exists now, those the app's own startup added too:
                        # a refusal here stops the server from starting.
                        kit.app_check.run_final()
                except Exception as refused:
                    # The app's shutdown runs as after any run, the refusal not thrown
                    # into its lifespan (an `except Exception` around its yield hid it),
                    # and not lost to an error of that shutdown either.
                    await _close_app_lifespan(app_lifespan, refused)
                    raise
                frozen = kit.settings.gc_freeze
                if frozen:
                    _freeze_startup_objects()
                try:
                    yield state
                finally:
                    if frozen:
                        gc.unfreeze()
        finally:
            # Also when the app's own startup failed: no heartbeat left counting it.
            if kit.instances is not None:
                await kit.instances.aclose()
            if kit.redis is not None:
                await kit.redis.aclose()

    app.router.lifespan_context = lifespan


async def _close_app_lifespan(app_lifespan: AsyncExitStack, refused: Exception) -> None:
    """Run the app's own shutdown after a refusal; its own failure is logged, not raised."""
    try:
        await app_lifespan.aclose()
    except Exception as failed:  # noqa: BLE001 - the refusal is what stops the server
        _logger.error(
            "app_shutdown_failed",
            message="the app's shutdown raised while startup was refused",
            error=type(failed).__name__,
        )
        refused.add_note(f"the app's shutdown then raised {type(failed).__name__}")


def _require_asyncio() -> None:
    """Refuse to start on another event loop than asyncio's (trio): every request would fail.

    The timeouts' watchdog, the Redis client and the heartbeat run on asyncio (uvloop is
    asyncio's); hypercorn's ``--worker-class trio`` started the app, then answered every
    request, the health probes' included, with a 500.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError(
            "hardenkit needs an asyncio event loop (uvicorn, granian, hypercorn with "
            "--worker-class asyncio or uvloop); this server runs another one (trio?)"
        ) from None


def _freeze_startup_objects() -> None:
    """Keep what startup built (modules, routes, settings, clients) out of every collection.

    Under load many short-lived objects are alive at once, so collections run often, and
    each one scans every tracked object: frozen ones are skipped. The garbage is
    collected first, so none of it is kept forever.
    """
    gc.collect()
    gc.freeze()
    _logger.info("gc_frozen", frozen_objects=gc.get_freeze_count())
