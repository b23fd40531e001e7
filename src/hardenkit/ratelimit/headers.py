"""Response header fields describing a decision.

``RateLimit-Policy`` and ``RateLimit`` follow draft-ietf-httpapi-ratelimit-headers-09
(structured field lists, one member per policy: ``"<policy>";q=<quota>;w=<window>``
and ``"<policy>";r=<remaining>;t=<seconds to reset>``); the legacy ``X-RateLimit-*`` trio
is added when asked for (``X-RateLimit-Reset`` in seconds from now, like ``t``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from hardenkit import errors
from hardenkit.ratelimit.decision import RateLimitDecision

__all__ = ["decision_headers", "decisions_headers", "retry_after_seconds"]

# A rule's RateLimit-Policy member never changes (its name, quota and window are fixed):
# formatted once. Bounded, as the names come from code, not from requests.
_POLICY_MEMBERS: dict[tuple[str, int, int], str] = {}
_MAX_POLICY_MEMBERS = 1024


def _policy_member(policy: str, decision: RateLimitDecision) -> str:
    key = (policy, decision.limit, decision.period_seconds)
    member = _POLICY_MEMBERS.get(key)
    if member is None:
        member = f'"{policy}";q={decision.limit};w={decision.period_seconds}'
        if len(_POLICY_MEMBERS) < _MAX_POLICY_MEMBERS:
            _POLICY_MEMBERS[key] = member
    return member


def retry_after_seconds(decision: RateLimitDecision) -> int:
    """Whole seconds for ``Retry-After``, rounded up (never 0 for a refusal)."""
    return errors.retry_after_seconds(decision.retry_after)


def decision_headers(
    policy: str, decision: RateLimitDecision, *, legacy: bool = False
) -> list[tuple[bytes, bytes]]:
    """Return the header fields describing ``decision`` of the rule named ``policy``."""
    return decisions_headers([(policy, decision)], legacy=legacy)


def decisions_headers(
    decisions: Sequence[tuple[str, RateLimitDecision]], *, legacy: bool = False
) -> list[tuple[bytes, bytes]]:
    """Return the header fields describing every ``(policy, decision)``, in order.

    ``RateLimit-Policy`` and ``RateLimit`` hold one list member per policy (structured
    field lists: ``"ip";q=100;w=60, "export";q=5;w=60``); the legacy trio describes the
    decision with the fewest remaining.
    """
    if not decisions:
        return []
    policies, limits = [], []
    for policy, decision in decisions:
        policies.append(_policy_member(policy, decision))
        reset = math.ceil(decision.reset_after)
        limits.append(f'"{policy}";r={max(0, decision.remaining)};t={reset}')
    headers = [
        (b"ratelimit-policy", ", ".join(policies).encode()),
        (b"ratelimit", ", ".join(limits).encode()),
    ]
    if legacy:
        tightest = min((decision for _, decision in decisions), key=lambda d: d.remaining)
        headers += [
            (b"x-ratelimit-limit", str(tightest.limit).encode()),
            (b"x-ratelimit-remaining", str(max(0, tightest.remaining)).encode()),
            (b"x-ratelimit-reset", str(math.ceil(tightest.reset_after)).encode()),
        ]
    return headers


def as_text(headers: list[tuple[bytes, bytes]]) -> tuple[tuple[str, str], ...]:
    """Return raw header fields as the text pairs a :class:`~hardenkit.errors.Refusal` holds."""
    return tuple((name.decode("latin-1"), value.decode("latin-1")) for name, value in headers)
