"""Retry budget: retries may add at most a fraction on top of first attempts.

Without a budget, three attempts per call triple the traffic a failing dependency gets,
exactly when it can least take it. Like Finagle's ``RetryBudget``, every first attempt
deposits ``ratio`` of a retry into a sliding window and every retry withdraws one; a
small floor (``minimum_retries`` per window) lets a quiet caller retry at all.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

__all__ = ["RetryBudget"]


class RetryBudget:
    """Allows ``minimum_retries + ratio × first attempts`` retries per sliding ``window``.

    Args:
        ratio: Retries allowed per first attempt (0.2: at most 20 % extra traffic).
        minimum_retries: Retries always allowed per window, whatever the traffic.
        window: Seconds over which attempts and retries are counted.
        clock: Monotonic clock in seconds; replace it in tests.
    """

    __slots__ = (
        "_clock",
        "_lock",
        "_requests",
        "_retries",
        "_second",
        "minimum_retries",
        "ratio",
        "window",
    )

    def __init__(
        self,
        *,
        ratio: float = 0.2,
        minimum_retries: int = 10,
        window: int = 10,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ratio < 0 or minimum_retries < 0 or window < 1:
            raise ValueError("ratio and minimum_retries must be >= 0 and window >= 1 second")
        self.ratio = ratio
        self.minimum_retries = minimum_retries
        self.window = window
        self._clock = clock
        self._lock = threading.Lock()
        self._requests = [0] * window
        self._retries = [0] * window
        self._second = math.floor(clock())

    def reset(self) -> None:
        """Forget every attempt and retry counted (a fresh window)."""
        with self._lock:
            self._requests[:] = [0] * self.window
            self._retries[:] = [0] * self.window
            self._second = math.floor(self._clock())

    def deposit(self) -> None:
        """Count one first attempt (cheap: the success path pays it on every call)."""
        second = int(self._clock())
        if second != self._second:
            self._roll(second)
        # A lost increment under a thread race only makes the budget slightly stricter.
        self._requests[second % self.window] += 1

    def try_withdraw(self) -> bool:
        """Take one retry from the budget; ``False`` when it is exhausted."""
        with self._lock:
            second = int(self._clock())
            if second != self._second:
                self._roll_locked(second)
            allowed = self.minimum_retries + self.ratio * sum(self._requests)
            if sum(self._retries) + 1 > allowed:
                return False
            self._retries[second % self.window] += 1
            return True

    def _roll(self, second: int) -> None:
        with self._lock:
            self._roll_locked(second)

    def _roll_locked(self, second: int) -> None:
        last = self._second
        if second <= last:
            return
        if second - last >= self.window:
            self._requests[:] = [0] * self.window
            self._retries[:] = [0] * self.window
        else:
            for passed in range(last + 1, second + 1):
                self._requests[passed % self.window] = 0
                self._retries[passed % self.window] = 0
        self._second = second
