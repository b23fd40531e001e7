"""The switch that turns rate limits off for a test (``hardenkit.testing.limits_disabled``).

Process-wide, like stamina's testing switch: the app may serve a test from another
thread. While it is on, every limiter admits every call without charging any store.
"""

from __future__ import annotations

__all__ = ["LIMITS", "LimitSwitch"]


class LimitSwitch:
    """Whether rate limits are enforced; only ``hardenkit.testing`` turns them off."""

    __slots__ = ("disabled",)

    def __init__(self) -> None:
        self.disabled = False


LIMITS = LimitSwitch()
"""Read by :meth:`~hardenkit.ratelimit.limiter.RateLimiter.hit` on every decision."""
