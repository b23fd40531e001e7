"""Process-wide rate-limit state that ``hardenkit.testing`` switches off or resets.

:data:`LIMITS` turns rate limits off for a test (``hardenkit.testing.limits_disabled``).
Process-wide, like stamina's testing switch: the app may serve a test from another
thread. While it is on, every limiter admits every call without charging any store.

:data:`COMPUTED_RATES` knows every route limit that caches rates it computed per caller
(a tenant's plan), so ``hardenkit.testing.reset()`` forgets them with the counts.
"""

from __future__ import annotations

import weakref
from typing import Protocol

__all__ = ["COMPUTED_RATES", "LIMITS", "ComputedRates", "LimitSwitch"]


class LimitSwitch:
    """Whether rate limits are enforced; only ``hardenkit.testing`` turns them off."""

    __slots__ = ("disabled",)

    def __init__(self) -> None:
        self.disabled = False


LIMITS = LimitSwitch()
"""Read by :meth:`~hardenkit.ratelimit.limiter.RateLimiter.hit` on every decision."""


class _RateCache(Protocol):
    def forget_rates(self) -> None: ...


class ComputedRates:
    """The live route limits whose computed rates a test reset forgets."""

    __slots__ = ("_limits",)

    def __init__(self) -> None:
        self._limits: weakref.WeakSet[_RateCache] = weakref.WeakSet()

    def track(self, limit: _RateCache) -> None:
        """Remember ``limit`` (weakly: a limit nobody holds is forgotten)."""
        self._limits.add(limit)

    def forget(self) -> None:
        """Make every tracked limit compute each caller's rate again."""
        for limit in list(self._limits):
            limit.forget_rates()


COMPUTED_RATES = ComputedRates()
"""Emptied by :func:`hardenkit.testing.reset` and :func:`hardenkit.testing.areset`."""
