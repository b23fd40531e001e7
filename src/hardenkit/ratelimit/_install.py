"""How :func:`hardenkit.install` builds the two rate-limit layers from settings."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.middleware import Middleware

from hardenkit.ratelimit.decision import RateLimitStore
from hardenkit.ratelimit.keys import ClientIpKey, route, tenant
from hardenkit.ratelimit.memory import MemoryStore
from hardenkit.ratelimit.middleware import RateLimitMiddleware
from hardenkit.ratelimit.redis_store import RedisStore
from hardenkit.ratelimit.rules import RateLimitRule

if TYPE_CHECKING:
    from hardenkit.install import Hardened

__all__ = [
    "client_ip_rate_limit",
    "principal_rate_limit",
    "rate_limit_store",
    "webhook_rate_limit",
]


def rate_limit_store(kit: Hardened) -> RateLimitStore:
    """Return the app's one rate-limit store, building it on first use.

    Redis (through the app's shared guard) when ``HARDENKIT_REDIS_URL`` is set, memory
    otherwise; both layers and any :class:`RouteLimit` given ``kit.rate_limit_store``
    share it.
    """
    if kit.rate_limit_store is None:
        settings = kit.settings
        memory = MemoryStore(max_keys=settings.rate_limit_memory_max_keys)
        if kit.redis is not None and kit.redis_guard is not None:
            kit.rate_limit_store = RedisStore(
                kit.redis,
                guard=kit.redis_guard,
                fallback=memory,
                prefix=settings.rate_limit_key_prefix,
                fallback_share=settings.rate_limit_fallback_share,
                instances=kit.instances,
            )
        else:
            kit.rate_limit_store = memory
    return kit.rate_limit_store


def _exempt_paths(kit: Hardened) -> list[str]:
    # The probes are never limited, whatever else is configured: a kubelet that gets 429
    # marks the pod unready.
    settings = kit.settings
    return [settings.health_path, settings.ready_path, *settings.rate_limit_exempt_paths]


def _guarded_webhook_paths(kit: Hardened) -> list[str]:
    # The paths WebhookMiddleware guards (install() adds it only with a secret): a path
    # no signature check covers keeps the per-ip default.
    settings = kit.settings
    return list(settings.webhook_paths) if settings.webhook_secret is not None else []


def client_ip_rate_limit(kit: Hardened) -> Middleware:
    """The layer before auth: the strict auth-path rule, then the default, per client ip."""
    settings = kit.settings
    client_ip = ClientIpKey(settings.rate_limit_ipv6_prefix_length)
    down = settings.rate_limit_redis_down
    rules = [
        RateLimitRule(
            "auth",
            settings.rate_limit_auth,
            key=client_ip,
            paths=settings.auth_paths,
            when_down=down,
        ),
        # Webhook paths have their own rule (webhook_rate_limit): a provider delivers
        # from a few addresses, far more often than one client browses.
        RateLimitRule(
            "ip",
            settings.rate_limit_default,
            key=client_ip,
            except_paths=_guarded_webhook_paths(kit),
            when_down=down,
        ),
    ]
    return Middleware(
        RateLimitMiddleware,
        rules=rules,
        store=rate_limit_store(kit),
        exempt_paths=_exempt_paths(kit),
        trusted_proxies=settings.trusted_proxies,
        legacy_headers=settings.rate_limit_legacy_headers,
    )


def principal_rate_limit(kit: Hardened) -> Middleware:
    """The layer after auth: per verified tenant; requests without a tenant are not counted."""
    settings = kit.settings
    rules = [
        RateLimitRule(
            "tenant",
            settings.rate_limit_tenant,
            key=tenant,
            when_down=settings.rate_limit_redis_down,
        )
    ]
    return Middleware(
        RateLimitMiddleware,
        rules=rules,
        store=rate_limit_store(kit),
        exempt_paths=_exempt_paths(kit),
        trusted_proxies=settings.trusted_proxies,
        legacy_headers=settings.rate_limit_legacy_headers,
    )


def webhook_rate_limit(kit: Hardened) -> list[Middleware]:
    """The layer inside the webhook layer: one budget per webhook path (method and path).

    It sits after signature verification, so only verified deliveries are counted: an
    unsigned flood is refused before it can spend the provider's budget, and the budget
    still bounds how often the handlers run. Keyed by path rather than ip, because a
    provider sends from a pool of addresses that changes without notice, and nobody but
    the holder of the secret can reach this key. None when no webhook path is set.
    """
    settings = kit.settings
    webhook_paths = _guarded_webhook_paths(kit)
    if not webhook_paths:
        return []
    rule = RateLimitRule(
        "webhook",
        settings.rate_limit_webhook,
        key=route,
        paths=webhook_paths,
        when_down=settings.rate_limit_redis_down,
    )
    return [
        Middleware(
            RateLimitMiddleware,
            rules=[rule],
            store=rate_limit_store(kit),
            exempt_paths=_exempt_paths(kit),
            trusted_proxies=settings.trusted_proxies,
            legacy_headers=settings.rate_limit_legacy_headers,
        )
    ]
