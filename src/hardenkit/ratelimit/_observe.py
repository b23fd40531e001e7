"""What every refusal and decision leaves behind: a metric, and an audit event if refused."""

from __future__ import annotations

from hardenkit.logs.audit import AuditEventType, audit
from hardenkit.ratelimit.decision import RateLimitDecision
from hardenkit.ratelimit.headers import retry_after_seconds
from hardenkit.telemetry import ratelimit_decisions

_ATTRIBUTES: dict[tuple[str, bool, bool, str], dict[str, str]] = {}
_MAX_CACHED = 1024  # rule names are fixed at construction; stay bounded regardless


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


def audit_refusal(rule: str, decision: RateLimitDecision) -> int:
    """Emit the audit event of a refusal; return the ``Retry-After`` seconds."""
    retry_after = retry_after_seconds(decision)
    audit(
        AuditEventType.RATE_LIMITED,
        "denied",
        reason="store_unavailable" if decision.unavailable else "rate_limited",
        details={"rule": rule, "retry_after_seconds": retry_after, "backend": decision.backend},
    )
    return retry_after


UNAVAILABLE_DETAIL = "Rate limiting is temporarily unavailable; retry later."


def refused_detail(retry_after: int) -> str:
    """The problem ``detail`` of a 429."""
    return f"Too many requests; retry after {retry_after} seconds."
