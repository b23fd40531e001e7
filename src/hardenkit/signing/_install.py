"""What ``install()`` wires for signing: the shared replay store, message verifier, middleware."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.middleware import Middleware

from hardenkit.signing.messages import MessageVerifier
from hardenkit.signing.middleware import WebhookMiddleware
from hardenkit.signing.replay import ReplayStore
from hardenkit.signing.webhooks import WebhookVerifier

if TYPE_CHECKING:
    from hardenkit.install import Hardened

__all__ = ["install_signing", "webhook_middleware"]


def install_signing(kit: Hardened) -> None:
    """Give ``kit`` its replay store (on the shared Redis guard) and message verifier."""
    settings = kit.settings
    kit.replay_store = ReplayStore(
        kit.redis,
        guard=kit.redis_guard,
        prefix=settings.replay_key_prefix,
        max_memory_entries=settings.replay_max_memory_entries,
        when_down=settings.replay_redis_down,
    )
    if kit.redis is not None and settings.replay_redis_down == "closed":
        # Non-critical: the check says the replay store is unhealthy, the instance stays
        # in rotation for everything else (its other routes serve, on the fallbacks).
        kit.health.add("replay", kit.replay_store.health_check, critical=False)
    if settings.message_trusted_keys:
        kit.message_verifier = MessageVerifier(
            settings.message_trusted_keys,
            replay_store=kit.replay_store,
            tolerance=settings.message_tolerance,
            max_body_bytes=settings.message_max_body_bytes,
        )


def webhook_middleware(kit: Hardened) -> list[Middleware]:
    """Return the webhook layer for ``HARDENKIT_WEBHOOK_PATHS`` (none when unset)."""
    settings = kit.settings
    if not settings.webhook_paths or settings.webhook_secret is None:
        return []
    verifier = WebhookVerifier(
        settings.webhook_secret.get_secret_value(),
        scheme=settings.webhook_scheme,
        tolerance=settings.webhook_tolerance,
        max_body_bytes=settings.webhook_max_body_bytes,
    )
    return [
        Middleware(
            WebhookMiddleware,
            verifier=verifier,
            paths=settings.webhook_paths,
            replay_store=kit.replay_store,
            on_duplicate=settings.webhook_on_duplicate,
            dedupe_ttl=settings.webhook_dedupe_ttl,
        )
    ]
