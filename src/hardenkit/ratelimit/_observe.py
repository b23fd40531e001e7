"""What every decision leaves behind (a metric) and what a refusal answers and audits."""

from __future__ import annotations

import functools

from hardenkit.errors import ErrorCode, Refusal
from hardenkit.logs.audit import AuditEventType, audit
from hardenkit.ratelimit.decision import RateLimitDecision
from hardenkit.ratelimit.headers import retry_after_seconds
from hardenkit.telemetry import ratelimit_decisions

_ATTRIBUTES: dict[tuple[str, bool, bool, str], dict[str, str]] = {}
_MAX_CACHED = 1024  # rule names are fixed at construction; stay bounded regardless

UNAVAILABLE_DETAIL = "Rate limiting is temporarily unavailable; retry later."


def record_decision(rule: str, decision: RateLimitDecision) -> None:
    """Count ``decision`` in ``hardenkit.ratelimit.decisions`` by rule, outcome and backend."""
    cache_key = (rule, decision.allowed, decision.unavailable, decision.backend)
    attributes = _ATTRIBUTES.get(cache_key)
    if attributes is None:
        outcome = (
            "allowed" if decision.allowed else "unavailable" if decision.unavailable else "denied"
        )
        attributes = {"rule": rule, "outcome": outcome, "backend": decision.backend}
        if len(_ATTRIBUTES) < _MAX_CACHED:
            _ATTRIBUTES[cache_key] = attributes
    ratelimit_decisions.add(1, attributes)


def refusal_of(
    rule: str, decision: RateLimitDecision, rate_headers: tuple[tuple[str, str], ...]
) -> Refusal:
    """The answer to a refused ``decision``: ``429``, or ``503`` while the store is down.

    ``rate_headers`` (``RateLimit-Policy``...) go on the ``429`` only. The audit event is
    emitted when the refusal is sent.
    """
    retry_after = retry_after_seconds(decision)
    on_sent = functools.partial(_audit_refusal, rule, decision, retry_after)
    if decision.unavailable:
        return Refusal.retry_later(
            503,
            ErrorCode.SERVICE_UNAVAILABLE,
            UNAVAILABLE_DETAIL,
            wait=retry_after,
            on_sent=on_sent,
        )
    return Refusal.retry_later(
        429,
        ErrorCode.RATE_LIMITED,
        f"Too many requests; retry after {retry_after} seconds.",
        wait=retry_after,
        headers=rate_headers,
        extensions={"retry_after": retry_after},
        on_sent=on_sent,
    )


def _audit_refusal(rule: str, decision: RateLimitDecision, retry_after: int) -> None:
    audit(
        AuditEventType.RATE_LIMITED,
        "denied",
        reason="store_unavailable" if decision.unavailable else "rate_limited",
        details={"rule": rule, "retry_after_seconds": retry_after, "backend": decision.backend},
    )
