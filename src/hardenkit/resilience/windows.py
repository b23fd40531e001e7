"""Sliding windows that aggregate call outcomes for a circuit breaker.

Both keep running totals, so recording an outcome and reading the rates cost the same
whatever the window size. :class:`CountWindow` holds the last ``size`` outcomes;
:class:`TimeWindow` holds the outcomes of the last ``size`` whole seconds of the clock
(one bucket per second, as Resilience4j's time-based window does).
"""

from __future__ import annotations

import math

__all__ = ["CountWindow", "TimeWindow", "Window"]

_FAILED = 1
_SLOW = 2


class CountWindow:
    """The last ``size`` outcomes."""

    __slots__ = ("_next", "_ring", "failed", "size", "slow", "total")

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("window size must be at least 1")
        self.size = size
        self._ring: list[int] = []
        self._next = 0
        self.total = 0
        self.failed = 0
        self.slow = 0

    def add(self, failed: bool, slow: bool, now: float) -> None:
        """Record one outcome (``now`` is unused: the window counts calls, not time)."""
        code = (_FAILED if failed else 0) | (_SLOW if slow else 0)
        if self.total < self.size:
            self._ring.append(code)
            self.total += 1
        else:
            old = self._ring[self._next]
            self._ring[self._next] = code
            self._next = (self._next + 1) % self.size
            self.failed -= old & _FAILED
            self.slow -= (old & _SLOW) >> 1
        self.failed += code & _FAILED
        self.slow += (code & _SLOW) >> 1

    def advance(self, now: float) -> None:
        """Nothing ages out of a count window."""

    def reset(self) -> None:
        """Forget every outcome."""
        self._ring.clear()
        self._next = 0
        self.total = self.failed = self.slow = 0


class TimeWindow:
    """The outcomes of the last ``size`` whole seconds of the clock."""

    __slots__ = ("_failed", "_last_second", "_slow", "_total", "failed", "size", "slow", "total")

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("window size must be at least 1 second")
        self.size = size
        self._total = [0] * size
        self._failed = [0] * size
        self._slow = [0] * size
        self._last_second: int | None = None
        self.total = 0
        self.failed = 0
        self.slow = 0

    def advance(self, now: float) -> None:
        """Drop the buckets of seconds that have left the window at ``now``."""
        second = math.floor(now)
        last = self._last_second
        if last is None or second - last >= self.size:
            self._clear_buckets()
        elif second > last:
            for passed in range(last + 1, second + 1):
                index = passed % self.size
                self.total -= self._total[index]
                self.failed -= self._failed[index]
                self.slow -= self._slow[index]
                self._total[index] = self._failed[index] = self._slow[index] = 0
        if last is None or second > last:
            self._last_second = second

    def add(self, failed: bool, slow: bool, now: float) -> None:
        """Record one outcome at ``now``."""
        self.advance(now)
        index = math.floor(now) % self.size
        self._total[index] += 1
        self.total += 1
        if failed:
            self._failed[index] += 1
            self.failed += 1
        if slow:
            self._slow[index] += 1
            self.slow += 1

    def reset(self) -> None:
        """Forget every outcome."""
        self._clear_buckets()
        self._last_second = None

    def _clear_buckets(self) -> None:
        for buckets in (self._total, self._failed, self._slow):
            buckets[:] = [0] * self.size
        self.total = self.failed = self.slow = 0


Window = CountWindow | TimeWindow
