"""Per-attempt timeouts for coroutines, one timer per event loop instead of one per call.

``asyncio.timeout`` schedules (and cancels) a timer handle for every call, which costs
microseconds and fills the loop's heap with cancelled handles under load. Here each event
loop has one watchdog holding the attempts in flight; its single timer is armed for the
earliest deadline and re-armed when it fires. Entering and leaving an attempt is a set
insertion and removal. On expiry the attempt's task is cancelled exactly as
``asyncio.timeout`` does it (``task.cancel()``, then ``uncancel()`` when the
``CancelledError`` comes back), so no task is created and none is left behind.
"""

from __future__ import annotations

import asyncio
import math
import weakref

__all__ = ["AttemptWatch", "watch"]


class _Watchdog:
    __slots__ = ("__weakref__", "_armed_for", "_handle", "_loop", "_watches")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._watches: set[AttemptWatch] = set()
        self._handle: asyncio.TimerHandle | None = None
        self._armed_for = math.inf

    def add(self, attempt: AttemptWatch) -> None:
        self._watches.add(attempt)
        if attempt.deadline < self._armed_for:
            self._arm(attempt.deadline)

    def discard(self, attempt: AttemptWatch) -> None:
        # The timer is left armed: when it fires with nothing due, it re-arms or stops.
        self._watches.discard(attempt)

    def _arm(self, when: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._armed_for = when
        self._handle = self._loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._handle = None
        self._armed_for = math.inf
        now = self._loop.time()
        earliest = math.inf
        for attempt in list(self._watches):
            if attempt.deadline <= now:
                self._watches.discard(attempt)
                attempt.expire()
            elif attempt.deadline < earliest:
                earliest = attempt.deadline
        if earliest < math.inf:
            self._arm(earliest)


class AttemptWatch:
    """One attempt under a timeout, in the current task."""

    __slots__ = ("__weakref__", "_cancelling", "_dog", "_task", "deadline", "expired")

    def __init__(self, dog: _Watchdog, task: asyncio.Task[object], deadline: float) -> None:
        self._dog = dog
        self._task = task
        self._cancelling = task.cancelling()
        self.deadline = deadline
        self.expired = False

    def expire(self) -> None:
        self.expired = True
        self._task.cancel()

    def timed_out(self) -> bool:
        """After a ``CancelledError``: whether it was this timeout's (then absorbed)."""
        if not self.expired:
            return False
        self.expired = False
        return self._task.uncancel() <= self._cancelling

    def done(self) -> None:
        """Leave the watchdog; absorb a cancellation the callee swallowed."""
        self._dog.discard(self)
        if self.expired:
            self.expired = False
            self._task.uncancel()


_dogs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Watchdog] = weakref.WeakKeyDictionary()
_last: tuple[asyncio.AbstractEventLoop | None, _Watchdog | None] = (None, None)


def watch(timeout: float) -> AttemptWatch:
    """Start watching the current task; it is cancelled if still running after ``timeout``."""
    global _last  # noqa: PLW0603 - a one-entry cache of the loop's watchdog
    loop = asyncio.get_running_loop()
    last_loop, dog = _last
    if loop is not last_loop or dog is None:
        dog = _dogs.get(loop)
        if dog is None:
            dog = _dogs[loop] = _Watchdog(loop)
        _last = (loop, dog)
    task = asyncio.current_task(loop)
    if task is None:  # pragma: no cover - awaiting always happens in a task
        raise RuntimeError("a timeout needs a running task")
    attempt = AttemptWatch(dog, task, loop.time() + timeout)
    dog.add(attempt)
    return attempt
