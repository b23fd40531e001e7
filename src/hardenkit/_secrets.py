"""How strong a secret is, judged the same way for every secret hardenkit is given.

JWT secrets, webhook secrets (as text for Stripe-style, as key bytes for Standard
Webhooks), message signing seeds and API keys (by hash: only hashes are configured) go
through :func:`secret_weakness`, which refuses:

- a published secret: a placeholder from documentation (jwt.io's ``your-256-bit-secret``,
  Stripe's and Standard Webhooks' examples), a demo value of the reference app, or any
  secret that contains one (doubling a placeholder does not make it secret);
- a secret too short to hold 128 bits;
- a secret whose unpredictable part is under 128 bits: each character counts as many
  bits as its character classes allow (lower, upper, digits, symbols; 8 bits for binary
  keys), except characters a guesser gets for free: a repeat or a neighbour of the one
  before (``aaaa``, ``abcd``, ``9876``), the next step of a progression (``aceg``), and
  characters continuing a run of four already seen earlier in the secret.

Random secrets pass with a wide margin (32 random bytes as hex, base64 or urlsafe text
score about 190-280 bits); the judgement never says what the secret is.
"""

from __future__ import annotations

import hashlib
import math
import re
import string
from typing import Final

from hardenkit.signing._published import (
    DEMO_AGENT_PRIVATE_KEY,
    DEMO_SERVICE_PRIVATE_KEY,
    PUBLISHED_WEBHOOK_SECRETS,
)
from hardenkit.signing._secret import webhook_key

__all__ = [
    "MIN_SECRET_BITS",
    "PUBLISHED_SECRETS",
    "estimated_bits",
    "published_api_key_hashes",
    "published_seed",
    "secret_weakness",
]

MIN_SECRET_BITS: Final = 128
_REPEAT_WINDOW = 4

# Secrets printed in documentation people copy from, and the reference app's demo values.
PUBLISHED_SECRETS: Final[tuple[str, ...]] = (
    # jwt.io's debugger (HS256/384/512 placeholders, old and new).
    "your-256-bit-secret",
    "your-384-bit-secret",
    "your-512-bit-secret",
    "a-string-secret-at-least-256-bits-long",
    # Tutorials and framework docs.
    "your-secret-key",
    "your_secret_key",
    "your-jwt-secret",
    "supersecret",
    "secretkey",
    "changeme",
    "change-me",
    "change_me",
    "replace-me",
    "do-not-use",
    "insecure",
    "placeholder",
    "example",
    "demo",
    # The reference app's JWT secret (examples/reference_app/settings.py, docs/auth.md).
    "hardenkit-demo-jwt-secret-Qm8vT2xL5nR9wK3pZ7cY1hB4",
    # Stripe's documented test secret form and Standard Webhooks/demo secrets.
    "whsec_test_secret",
    *PUBLISHED_WEBHOOK_SECRETS,
)
# Placeholder API keys from documentation and tutorials; configured as sha256 hashes.
_PUBLISHED_API_KEYS: Final = (
    "your-api-key",
    "your_api_key",
    "api-key",
    "apikey",
    "changeme",
    "secret",
    "test",
    "sk_test_4eC39HqLyjWDarjtT1zdp7dc",  # Stripe's documented test key
    "hardenkit-demo-api-key",
)
_CLASSES: Final = (
    (frozenset(string.ascii_lowercase), 26),
    (frozenset(string.ascii_uppercase), 26),
    (frozenset(string.digits), 10),
    (frozenset(string.punctuation + " "), 33),
)
# Short placeholders count as whole words only (`my-demo-key`, not `xDeMoq` in random text);
# long ones anywhere.
_PUBLISHED_PATTERN: Final = re.compile(
    "|".join(
        re.escape(secret) if len(secret) >= 16 else rf"(?<![a-z0-9]){re.escape(secret)}(?![a-z0-9])"
        for secret in (published.lower() for published in PUBLISHED_SECRETS)
    )
)


def _standard_key(secret: str) -> bytes | None:
    try:
        return webhook_key(secret, "standard")
    except ValueError:
        return None


# Binary keys are compared as bytes: the text of each secret, and a Standard Webhooks
# secret's decoded key (how the webhook key and message seeds reach the judgement).
_PUBLISHED_BYTES: Final = frozenset(
    {secret.encode() for secret in PUBLISHED_SECRETS if len(secret) >= 16}
    | {key for key in map(_standard_key, PUBLISHED_WEBHOOK_SECRETS) if key is not None}
)
_PUBLISHED_SEEDS: Final = (DEMO_AGENT_PRIVATE_KEY, DEMO_SERVICE_PRIVATE_KEY)


def published_api_key_hashes() -> frozenset[str]:
    """Return the sha256 hex of each published placeholder API key."""
    return frozenset(hashlib.sha256(key.encode()).hexdigest() for key in _PUBLISHED_API_KEYS)


def _pool_bits(secret: str | bytes) -> float:
    if isinstance(secret, bytes):
        return 8.0
    pool = sum(size for members, size in _CLASSES if members.intersection(secret))
    # Only characters outside the ASCII classes: count them as symbols, never as more.
    return math.log2(pool or 33)


def estimated_bits(secret: str | bytes) -> float:
    """Return the bits a guesser must find: unpredictable characters x bits per character."""
    codes = list(secret.encode() if isinstance(secret, str) else secret)
    seen: set[tuple[int, ...]] = set()
    unpredictable = 0
    for index, code in enumerate(codes):
        step = code - codes[index - 1] if index else None
        previous_step = codes[index - 1] - codes[index - 2] if index > 1 else None
        window = tuple(codes[max(0, index - _REPEAT_WINDOW + 1) : index + 1])
        predictable = (
            (step is not None and abs(step) <= 1)
            or (step is not None and step == previous_step)
            or (len(window) == _REPEAT_WINDOW and window in seen)
        )
        if len(window) == _REPEAT_WINDOW:
            seen.add(window)
        unpredictable += not predictable
    return unpredictable * _pool_bits(secret)


def secret_weakness(secret: str | bytes) -> str | None:
    """Return why ``secret`` cannot protect anything in production, or ``None``.

    The reason never contains the secret or any part of it.
    """
    if isinstance(secret, str):
        if _PUBLISHED_PATTERN.search(secret.lower()):
            return "is (or contains) a published placeholder, sample or demo secret"
    elif secret in _PUBLISHED_BYTES:
        return "is a published placeholder, sample or demo secret"
    size = len(secret.encode() if isinstance(secret, str) else secret)
    if size * _pool_bits(secret) < MIN_SECRET_BITS:
        return f"is too short to hold {MIN_SECRET_BITS} random bits"
    bits = estimated_bits(secret)
    if bits < MIN_SECRET_BITS:
        return (
            f"is too regular to be random (about {bits:.0f} unpredictable bits, under "
            f"{MIN_SECRET_BITS}: runs, sequences or repeats)"
        )
    return None


def published_seed(seed_text: str) -> bool:
    """Whether ``seed_text`` is one of the published demo signing seeds."""
    return seed_text.strip() in _PUBLISHED_SEEDS
