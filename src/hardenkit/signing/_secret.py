"""Webhook secrets as text, turned into HMAC keys the way each format defines it.

Standard Webhooks: ``whsec_`` followed by the base64 of the key bytes (the prefix is
optional); the HMAC key is the decoded bytes, at least 24 of them (the specification's
floor). Stripe-style: the secret text as a whole, ``whsec_`` included, encoded as UTF-8,
is the HMAC key (that is what Stripe's libraries do). Error messages never contain the
secret.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from typing import Literal

__all__ = [
    "MIN_STANDARD_SECRET_BYTES",
    "MIN_STRIPE_SECRET_CHARS",
    "WebhookScheme",
    "encode_standard_secret",
    "webhook_key",
    "webhook_keys",
]

WebhookScheme = Literal["standard", "stripe"]

MIN_STANDARD_SECRET_BYTES = 24
MIN_STRIPE_SECRET_CHARS = 16
_PREFIX = "whsec_"


def webhook_key(secret: str | bytes, scheme: WebhookScheme) -> bytes:
    """Return the HMAC key for ``secret`` in ``scheme``; ``bytes`` are used as they are.

    Raises:
        ValueError: The secret is malformed or too short (the message omits it).
    """
    if isinstance(secret, bytes):
        if len(secret) < MIN_STANDARD_SECRET_BYTES:
            raise ValueError(f"a raw webhook key needs at least {MIN_STANDARD_SECRET_BYTES} bytes")
        return secret
    text = secret.strip()
    if scheme == "stripe":
        if len(text) < MIN_STRIPE_SECRET_CHARS:
            raise ValueError(
                f"a Stripe-style webhook secret needs at least {MIN_STRIPE_SECRET_CHARS} characters"
            )
        return text.encode("utf-8")
    encoded = text.removeprefix(_PREFIX)
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a Standard Webhooks secret must be whsec_ followed by base64") from None
    if len(key) < MIN_STANDARD_SECRET_BYTES:
        raise ValueError(
            f"a Standard Webhooks secret must decode to at least {MIN_STANDARD_SECRET_BYTES} bytes"
        )
    return key


def webhook_keys(
    secrets: str | bytes | Iterable[str | bytes], scheme: WebhookScheme
) -> list[bytes]:
    """Return the keys for one secret, a comma-separated list, or an iterable of secrets.

    Raises:
        ValueError: No secret, or one of them is unusable.
    """
    if isinstance(secrets, bytes):
        items: list[str | bytes] = [secrets]
    elif isinstance(secrets, str):
        items = [part for part in secrets.split(",") if part.strip()]
    else:
        items = list(secrets)
    if not items:
        raise ValueError("at least one webhook secret is required")
    return [webhook_key(item, scheme) for item in items]


def encode_standard_secret(key: bytes) -> str:
    """Return ``key`` in the ``whsec_<base64>`` form a Standard Webhooks peer expects."""
    return _PREFIX + base64.b64encode(key).decode("ascii")
