"""What ``install()`` builds for signing: the shared replay store, message verifier, layer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.middleware import Middleware

from hardenkit._parts import ReadinessCheck
from hardenkit.signing.messages import MessageVerifier
from hardenkit.signing.middleware import DEFAULT_PROCESSING_TTL_SECONDS, WebhookMiddleware
from hardenkit.signing.replay import ReplayStore
from hardenkit.signing.webhooks import WebhookVerifier

if TYPE_CHECKING:
    from hardenkit._parts import Shared
    from hardenkit.settings import HardenSettings

__all__ = ["SigningPart", "build_signing"]


@dataclass(frozen=True, slots=True)
class SigningPart:
    """The webhook layer, the replay store it shares with the message verifier, and checks.

    Attributes:
        replay_store: Webhook ids and message nonces (Redis through the shared guard, or
            memory).
        middleware: The webhook layer for ``HARDENKIT_WEBHOOK_PATHS`` (``None`` when no
            path or no secret is set).
        message_verifier: Verifies messages signed by ``HARDENKIT_MESSAGE_TRUSTED_KEYS``
            (``None`` when no key is trusted).
        checks: The replay store's readiness, when it refuses while Redis is down.
    """

    replay_store: ReplayStore
    middleware: Middleware | None = None
    message_verifier: MessageVerifier | None = None
    checks: tuple[ReadinessCheck, ...] = ()


def build_signing(settings: HardenSettings, shared: Shared) -> SigningPart:
    """Build the replay store (on the shared Redis guard), message verifier and webhook layer."""
    replay_store = ReplayStore(
        shared.redis,
        guard=shared.guard,
        prefix=settings.replay_key_prefix,
        max_memory_entries=settings.replay_max_memory_entries,
        when_down=settings.replay_redis_down,
    )
    checks: tuple[ReadinessCheck, ...] = ()
    if shared.redis is not None and settings.replay_redis_down == "closed":
        # Non-critical: the check says the replay store is unhealthy, the instance stays
        # in rotation for everything else (its other routes serve, on the fallbacks).
        checks = (ReadinessCheck("replay", replay_store.health_check, critical=False),)
    message_verifier = None
    if settings.message_trusted_keys:
        message_verifier = MessageVerifier(
            settings.message_trusted_keys,
            replay_store=replay_store,
            tolerance=settings.message_tolerance,
            max_body_bytes=settings.message_max_body_bytes,
        )
    return SigningPart(
        replay_store=replay_store,
        middleware=_webhook_layer(settings, replay_store),
        message_verifier=message_verifier,
        checks=checks,
    )


def _webhook_layer(settings: HardenSettings, replay_store: ReplayStore) -> Middleware | None:
    paths = settings.verified_webhook_paths
    if not paths or settings.webhook_secret is None:
        return None
    verifier = WebhookVerifier(
        settings.webhook_secret.get_secret_value(),
        scheme=settings.webhook_scheme,
        tolerance=settings.webhook_tolerance,
        max_body_bytes=settings.webhook_max_body_bytes,
    )
    return Middleware(
        WebhookMiddleware,
        verifier=verifier,
        paths=paths,
        replay_store=replay_store,
        on_duplicate=settings.webhook_on_duplicate,
        dedupe_ttl=settings.webhook_dedupe_ttl,
        processing_ttl=processing_ttl(settings),
    )


# Beyond the longest timeout: the claim starts after the request did (its body was read
# first), and Redis counts the claim's TTL from when it ran the command.
_CLAIM_SLACK_SECONDS = 5.0


def processing_ttl(settings: HardenSettings) -> float:
    """Seconds a webhook claim lasts: longer than any handler may run under the timeouts.

    A claim that lapsed while its handler was still running would let the sender's next
    retry be processed alongside it. The request timeout (per route where one is set)
    cancels a handler first; the claim outlives the longest of them.
    """
    longest = max([settings.request_timeout, *settings.request_timeout_routes.values()])
    return max(float(DEFAULT_PROCESSING_TTL_SECONDS), longest + _CLAIM_SLACK_SECONDS)
