"""Signed webhooks and signed service messages, with replay protection.

* Webhooks: :func:`verify_webhook` / :func:`sign_webhook` (Standard Webhooks and
  Stripe-style HMAC-SHA256 over the exact raw body), :class:`WebhookVerifier` (also a
  Starlette/FastAPI dependency) and :class:`WebhookMiddleware` (chosen paths, each
  delivery processed once).
* Messages: :func:`sign_message` / :func:`verify_message` and :class:`MessageVerifier`
  (Ed25519 over canonical JSON, keys trusted by key id only, timestamp window, nonces).
* :class:`ReplayStore`: ids in Redis (``SET NX`` + TTL) with a bounded memory fallback.
"""

from hardenkit.signing._refusal import SignatureError
from hardenkit.signing.keys import (
    generate_private_key,
    load_private_key,
    load_public_key,
    private_key_text,
    public_key_text,
)
from hardenkit.signing.messages import (
    MessageVerifier,
    VerifiedMessage,
    canonical_json,
    sign_message,
    verify_message,
)
from hardenkit.signing.middleware import WebhookMiddleware
from hardenkit.signing.replay import ClaimOutcome, ReplayStore, ReplayStoreUnavailableError
from hardenkit.signing.webhooks import (
    VerifiedWebhook,
    WebhookScheme,
    WebhookVerifier,
    sign_webhook,
    verify_webhook,
)

__all__ = [
    "ClaimOutcome",
    "MessageVerifier",
    "ReplayStore",
    "ReplayStoreUnavailableError",
    "SignatureError",
    "VerifiedMessage",
    "VerifiedWebhook",
    "WebhookMiddleware",
    "WebhookScheme",
    "WebhookVerifier",
    "canonical_json",
    "generate_private_key",
    "load_private_key",
    "load_public_key",
    "private_key_text",
    "public_key_text",
    "sign_message",
    "sign_webhook",
    "verify_message",
    "verify_webhook",
]
