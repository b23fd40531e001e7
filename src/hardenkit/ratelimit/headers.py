"""Response header fields describing a decision.

``RateLimit-Policy`` and ``RateLimit`` follow draft-ietf-httpapi-ratelimit-headers-09
(structured fields: ``"<policy>";q=<quota>;w=<window>`` and
``"<policy>";r=<remaining>;t=<seconds to reset>``); the legacy ``X-RateLimit-*`` trio
is added when asked for (``X-RateLimit-Reset`` in seconds from now, like ``t``).
"""

from __future__ import annotations

import math

from hardenkit import errors
from hardenkit.ratelimit.decision import RateLimitDecision

__all__ = ["decision_headers", "retry_after_seconds"]


def retry_after_seconds(decision: RateLimitDecision) -> int:
    """Whole seconds for ``Retry-After``, rounded up (never 0 for a refusal)."""
    return errors.retry_after_seconds(decision.retry_after)


def decision_headers(
    policy: str, decision: RateLimitDecision, *, legacy: bool = False
) -> list[tuple[bytes, bytes]]:
    """Return the header fields describing ``decision`` of the rule named ``policy``."""
    remaining = max(0, decision.remaining)
    reset = math.ceil(decision.reset_after)
    headers = [
        (
            b"ratelimit-policy",
            f'"{policy}";q={decision.limit};w={decision.period_seconds}'.encode(),
        ),
        (b"ratelimit", f'"{policy}";r={remaining};t={reset}'.encode()),
    ]
    if legacy:
        headers += [
            (b"x-ratelimit-limit", str(decision.limit).encode()),
            (b"x-ratelimit-remaining", str(remaining).encode()),
            (b"x-ratelimit-reset", str(reset).encode()),
        ]
    return headers


def as_text(headers: list[tuple[bytes, bytes]]) -> tuple[tuple[str, str], ...]:
    """Return raw header fields as the text pairs a :class:`~hardenkit.errors.Refusal` holds."""
    return tuple((name.decode("latin-1"), value.decode("latin-1")) for name, value in headers)
