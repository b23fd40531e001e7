"""The tightest decision of every rate limit a request went through, kept in its scope.

The outermost :class:`~hardenkit.ratelimit.middleware.RateLimitMiddleware` creates the
report and writes its headers on the response; inner layers and per-route limits offer
their decisions to it instead of writing headers of their own.
"""

from __future__ import annotations

from starlette.types import Scope

from hardenkit.ratelimit.decision import RateLimitDecision

REPORT_KEY = "hardenkit.ratelimit"


class Report:
    """The tightest decision offered so far: a refusal wins, else the fewest remaining."""

    __slots__ = ("decision", "rule")

    def __init__(self) -> None:
        self.rule = ""
        self.decision: RateLimitDecision | None = None

    def offer(self, rule: str, decision: RateLimitDecision) -> None:
        """Keep ``decision`` if it is tighter than the one kept."""
        current = self.decision
        if (
            current is None
            or not decision.allowed
            or (current.allowed and decision.remaining < current.remaining)
        ):
            self.rule, self.decision = rule, decision


def report_of(scope: Scope) -> Report | None:
    """The report an outer rate-limit layer keeps for this request, if any."""
    report: Report | None = scope.get(REPORT_KEY)
    return report
