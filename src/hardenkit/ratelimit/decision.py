"""The answer of one rate-limit decision, and the stores' common shape."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from hardenkit.ratelimit.gcra import settle
from hardenkit.ratelimit.rate import Rate

__all__ = ["Backend", "RateLimitDecision", "RateLimitStore", "RedisDownBehaviour"]

RedisDownBehaviour = Literal["fallback", "open", "closed"]
"""While Redis is down: ``fallback`` to memory, ``open`` (allow), ``closed`` (refuse, 503)."""

Backend = Literal["redis", "memory", "none"]
"""What answered: Redis, the process memory, or nothing (``open``/``closed`` while down)."""


@dataclass(slots=True)
class RateLimitDecision:
    """Whether a request may proceed, and what the client should be told.

    A value: read it, do not change it (not frozen only because a frozen dataclass costs
    1 µs more to build, on every request).

    Attributes:
        allowed: Whether the units were granted.
        limit: Units per period of the rate that decided.
        remaining: Units that could still be taken now.
        retry_after: Seconds to wait before the same request would be admitted
            (0 when allowed).
        reset_after: Seconds until the full burst is available again.
        period_seconds: The rate's period, for the ``RateLimit-Policy`` header.
        backend: What answered (``"redis"``, ``"memory"`` or ``"none"``).
        unavailable: Refused only because Redis is down and the rule is ``closed``.
    """

    allowed: bool
    limit: int
    remaining: int
    retry_after: float
    reset_after: float
    period_seconds: int
    backend: Backend
    unavailable: bool = False


class RateLimitStore(Protocol):
    """Where GCRA state lives: :class:`MemoryStore` or :class:`RedisStore`."""

    async def decide(
        self, key: str, rate: Rate, cost: int, when_down: RedisDownBehaviour = "fallback"
    ) -> RateLimitDecision:
        """Take ``cost`` units of ``rate`` for ``key`` if they are available."""
        ...


def decision_from_gcra(
    rate: Rate,
    cost: int,
    *,
    allowed: bool,
    ahead_us: int,
    backend: Backend,
    held: int = 0,
    retry_after_us: int = 0,
) -> RateLimitDecision:
    """Build the public decision from a GCRA outcome (see :func:`~.gcra.settle`).

    ``held``: units other instances reserved (:func:`~.gcra.gcra_reserving`), not
    available to this one; a refusal then carries the script's ``retry_after_us``.
    """
    remaining, retry_us, reset_after_us = settle(
        allowed, ahead_us, rate.emission_interval_us, rate.tolerance_us, cost
    )
    if held:
        remaining = max(0, remaining - held)
        if not allowed:
            retry_us = retry_after_us
    return RateLimitDecision(
        allowed,
        rate.count,
        remaining,
        retry_us / 1_000_000,
        reset_after_us / 1_000_000,
        rate.period_seconds,
        backend,
    )
