"""How :func:`hardenkit.install` builds the rate-limit store and layers from settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.middleware import Middleware

from hardenkit._parts import ReadinessCheck
from hardenkit.ratelimit.keys import ClientIpKey, route, tenant
from hardenkit.ratelimit.memory import MemoryStore
from hardenkit.ratelimit.middleware import RateLimitMiddleware
from hardenkit.ratelimit.redis_store import RedisStore
from hardenkit.ratelimit.rules import RateLimitRule

if TYPE_CHECKING:
    from hardenkit._parts import Shared
    from hardenkit.ratelimit.decision import RateLimitStore
    from hardenkit.settings import HardenSettings

__all__ = ["RateLimitPart", "build_rate_limits"]


@dataclass(frozen=True, slots=True)
class RateLimitPart:
    """The app's one rate-limit store and the layers that share it.

    Attributes:
        store: Redis (through the app's shared guard) when ``HARDENKIT_REDIS_URL`` is set,
            memory otherwise; every layer and any :class:`RouteLimit` given
            ``kit.rate_limit_store`` share it.
        client_ip: Before auth: the strict auth-path rule, then the default, per client ip.
        tenant: After auth: per verified tenant; requests without one are not counted.
        webhook: Inside the webhook layer, one budget per webhook path (``None`` when no
            webhook path is guarded).
        checks: With Redis, ``rate_limits`` in ``/readyz``: degraded while decisions are
            held after Redis lost its data (docs/ratelimit.md).
    """

    store: RateLimitStore
    client_ip: Middleware
    tenant: Middleware
    webhook: Middleware | None = None
    checks: tuple[ReadinessCheck, ...] = ()


def build_rate_limits(settings: HardenSettings, shared: Shared) -> RateLimitPart:
    """Build the store once and the three layers that count on it."""
    store = _store(settings, shared)
    # The paths the webhook layer verifies; a path no signature check covers keeps the
    # per-ip default.
    webhook_paths = settings.verified_webhook_paths
    client_ip = ClientIpKey(settings.rate_limit_ipv6_prefix_length)
    down = settings.rate_limit_redis_down
    ip_rules = [
        RateLimitRule(
            "auth",
            settings.rate_limit_auth,
            key=client_ip,
            paths=settings.auth_paths,
            when_down=down,
        ),
        # Webhook paths have their own rule (the webhook layer): a provider delivers from
        # a few addresses, far more often than one client browses.
        RateLimitRule(
            "ip",
            settings.rate_limit_default,
            key=client_ip,
            except_paths=webhook_paths,
            when_down=down,
        ),
    ]
    tenant_rules = [RateLimitRule("tenant", settings.rate_limit_tenant, key=tenant, when_down=down)]
    checks: tuple[ReadinessCheck, ...] = ()
    if isinstance(store, RedisStore):
        checks = (ReadinessCheck("rate_limits", store.health_check, critical=False),)
    return RateLimitPart(
        store=store,
        client_ip=_layer(settings, store, ip_rules),
        tenant=_layer(settings, store, tenant_rules),
        webhook=_webhook_layer(settings, store, webhook_paths),
        checks=checks,
    )


def _store(settings: HardenSettings, shared: Shared) -> RateLimitStore:
    memory = MemoryStore(max_keys=settings.rate_limit_memory_max_keys)
    if shared.redis is None or shared.guard is None:
        return memory
    return RedisStore(
        shared.redis,
        guard=shared.guard,
        fallback=memory,
        prefix=settings.rate_limit_key_prefix,
        fallback_share=settings.rate_limit_fallback_share,
        instances=shared.instances,
        reserve_seconds=settings.rate_limit_reservation_seconds,
    )


def _layer(
    settings: HardenSettings, store: RateLimitStore, rules: list[RateLimitRule]
) -> Middleware:
    return Middleware(
        RateLimitMiddleware,
        rules=rules,
        store=store,
        # The probes are never limited, whatever else is configured: a kubelet that gets
        # 429 marks the pod unready.
        exempt_paths=[settings.health_path, settings.ready_path, *settings.rate_limit_exempt_paths],
        trusted_proxies=settings.trusted_proxies,
        legacy_headers=settings.rate_limit_legacy_headers,
    )


def _webhook_layer(
    settings: HardenSettings, store: RateLimitStore, webhook_paths: list[str]
) -> Middleware | None:
    """One budget per webhook path (method and path), for verified deliveries only.

    The layer sits after signature verification, so only verified deliveries are counted:
    an unsigned flood is refused before it can spend the provider's budget, and the
    budget still bounds how often the handlers run. Keyed by path rather than ip, because
    a provider sends from a pool of addresses that changes without notice, and nobody but
    the holder of the secret can reach this key.
    """
    if not webhook_paths:
        return None
    rule = RateLimitRule(
        "webhook",
        settings.rate_limit_webhook,
        key=route,
        paths=webhook_paths,
        when_down=settings.rate_limit_redis_down,
    )
    return _layer(settings, store, [rule])
