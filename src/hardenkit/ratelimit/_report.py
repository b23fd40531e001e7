"""Every rate-limit decision a request went through, kept in its scope.

The outermost :class:`~hardenkit.ratelimit.middleware.RateLimitMiddleware` creates the
report and writes its headers on the response; inner layers and per-route limits offer
their decisions to it instead of writing headers of their own. An admitted response
lists every rule that applied (draft-ietf-httpapi-ratelimit-headers: ``RateLimit`` and
``RateLimit-Policy`` are lists); a refused one names the rule that refused.
"""

from __future__ import annotations

from starlette.types import Scope

from hardenkit.ratelimit.decision import RateLimitDecision
from hardenkit.ratelimit.headers import decisions_headers

REPORT_KEY = "hardenkit.ratelimit"


class Report:
    """The decisions offered so far, by rule, and the first refusal among them."""

    __slots__ = ("decisions", "refused")

    def __init__(self) -> None:
        self.decisions: dict[str, RateLimitDecision] = {}
        self.refused: str | None = None

    def offer(self, rule: str, decision: RateLimitDecision) -> None:
        """Record ``decision`` of the rule named ``rule`` (its latest, if offered twice)."""
        self.decisions[rule] = decision
        if not decision.allowed and self.refused is None:
            self.refused = rule

    def headers(self, *, legacy: bool = False) -> list[tuple[bytes, bytes]]:
        """The header fields for the response: the refusing rule, else every rule."""
        if self.refused is not None:
            return decisions_headers([(self.refused, self.decisions[self.refused])], legacy=legacy)
        return decisions_headers(list(self.decisions.items()), legacy=legacy)


def report_of(scope: Scope) -> Report | None:
    """The report an outer rate-limit layer keeps for this request, if any."""
    report: Report | None = scope.get(REPORT_KEY)
    return report
