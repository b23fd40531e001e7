"""Per-attempt timeouts for coroutines, one timer per event loop instead of one per call.

``asyncio.timeout`` schedules (and cancels) a timer handle for every call, which costs
microseconds and fills the loop's heap with cancelled handles under load. Here each event
loop has one watchdog holding the attempts in flight; its single timer is armed for the
earliest deadline and re-armed when it fires. Entering and leaving an attempt is a set
insertion and removal. On expiry the attempt's task is cancelled exactly as
``asyncio.timeout`` does it (``task.cancel()``, then ``uncancel()`` when the
``CancelledError`` comes back), so no task is created and none is left behind.

A *patient* attempt (``watch(timeout, patient=True)``, the Redis guard's) measures the
callee, not this process: when its deadline is noticed late, because the event loop was
busy with other work, the time the loop owed it is not the callee's fault, so it gets a
fresh ``timeout`` from the moment the loop noticed (up to ``timeout`` +
``LOOP_LAG_ALLOWANCE`` in all, plus the lag itself, up to ``MAX_LOOP_LAG_FORGIVEN``:
a stall is never the callee's). So does an
attempt whose ``answering`` callback says the callee answered other calls within the last
``timeout`` (a queue behind a busy connection is not a dead one). When the deadline is
noticed on time otherwise, it still gets two more loop turns before it is cancelled: a
reply that is already readable wakes its task on the next turn (and a task it hands the
reply to, on the one after), and cancelling then would throw a reply away that came in
time.
"""

from __future__ import annotations

import asyncio
import math
import weakref
from collections.abc import Callable

__all__ = ["LOOP_LAG_ALLOWANCE", "MAX_LOOP_LAG_FORGIVEN", "AttemptWatch", "watch"]

_LATE_FRACTION = 0.1
"""A deadline noticed more than this fraction of the timeout late (and at least
``_LATE_FLOOR`` seconds) means the event loop was busy, not that the callee was slow."""
_LATE_FLOOR = 0.002
LOOP_LAG_ALLOWANCE = 1.0
"""Seconds a patient attempt may be given on top of its timeout, besides loop lag."""
MAX_LOOP_LAG_FORGIVEN = 5.0
"""Seconds of event-loop lag a patient attempt is forgiven at most, on top of the rest.

The lag is this process's time, never the callee's, so it does not use up
``LOOP_LAG_ALLOWANCE``: a handler that blocked the loop for 1.5 s left every call in
flight, and every call queued behind one, past a one-second allowance, and they fell
back although Redis had answered. The bound keeps a loop that is late to every deadline
from waiting for a hung callee for ever."""
_LAST_LOOKS = 2


class _Watchdog:
    __slots__ = ("__weakref__", "_armed_for", "_handle", "_watches", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
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
        self._handle = self.loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._handle = None
        self._armed_for = math.inf
        now = self.loop.time()
        earliest = math.inf
        for attempt in list(self._watches):
            if attempt.deadline <= now and attempt.patient:
                attempt.reconsider(now)
            if attempt.deadline <= now:
                self._watches.discard(attempt)
                attempt.expire()
            elif attempt.deadline < earliest:
                earliest = attempt.deadline
        if earliest < math.inf:
            self._arm(earliest)


class AttemptWatch:
    """One attempt under a timeout, in the current task."""

    __slots__ = (
        "__weakref__",
        "_answering",
        "_cancelling",
        "_dog",
        "_finished",
        "_task",
        "deadline",
        "expired",
        "latest",
        "loop_lag",
        "patient",
        "timeout",
    )

    def __init__(  # noqa: PLR0917 - positional: one is built on every guarded call
        self,
        dog: _Watchdog,
        task: asyncio.Task[object],
        deadline: float,
        timeout: float,
        patient: bool,
        latest: float,
        answering: Callable[[], bool] | None,
    ) -> None:
        self._answering = answering
        self._dog = dog
        self._task = task
        self._cancelling = task.cancelling()
        self._finished = False
        self.deadline = deadline
        self.timeout = timeout
        self.patient = patient
        self.latest = latest
        """The last moment a patient attempt may be given more time until."""
        self.expired = False
        self.loop_lag = 0.0
        """Seconds the loop was late to notice this attempt's deadlines (patient only)."""

    def reconsider(self, now: float) -> None:
        """Give a fresh timeout when the deadline passing is no evidence against the callee.

        That is when the loop noticed it late (this process was busy), or when the callee
        answered other calls within the last ``timeout`` (it is slow, not gone).
        """
        late = now - self.deadline
        if late > max(_LATE_FLOOR, self.timeout * _LATE_FRACTION):
            forgiven = min(late, MAX_LOOP_LAG_FORGIVEN - self.loop_lag)
            if forgiven > 0:
                self.loop_lag += forgiven
                self.latest += forgiven
        elif self._answering is None or not self._answering():
            return
        if now >= self.latest:
            return
        self.deadline = min(now + self.timeout, self.latest)

    def expire(self) -> None:
        if not self.patient:
            self._cancel()
            return
        self._dog.loop.call_soon(self._last_look, _LAST_LOOKS)

    def _last_look(self, turns_left: int) -> None:
        if self._finished:
            return
        if turns_left > 1:
            self._dog.loop.call_soon(self._last_look, turns_left - 1)
        else:
            self._cancel()

    def _cancel(self) -> None:
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
        self._finished = True
        self._dog.discard(self)
        if self.expired:
            self.expired = False
            self._task.uncancel()


_running_loop = asyncio.get_running_loop
_current_task = asyncio.current_task
_dogs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Watchdog] = weakref.WeakKeyDictionary()
_last: tuple[asyncio.AbstractEventLoop | None, _Watchdog | None] = (None, None)


def watch(
    timeout: float, *, patient: bool = False, answering: Callable[[], bool] | None = None
) -> AttemptWatch:
    """Start watching the current task; it is cancelled if still running after ``timeout``.

    ``patient``: time the event loop was late does not count, nor time while
    ``answering()`` says the callee is answering other calls (see the module docstring),
    up to ``LOOP_LAG_ALLOWANCE`` seconds beyond ``timeout``.
    """
    global _last  # noqa: PLW0603 - a one-entry cache of the loop's watchdog
    loop = _running_loop()
    last_loop, dog = _last
    if loop is not last_loop or dog is None:
        dog = _dogs.get(loop)
        if dog is None:
            dog = _dogs[loop] = _Watchdog(loop)
        _last = (loop, dog)
    task = _current_task(loop)
    if task is None:  # pragma: no cover - awaiting always happens in a task
        raise RuntimeError("a timeout needs a running task")
    now = loop.time()
    # A patient attempt may get more time, up to LOOP_LAG_ALLOWANCE beyond its timeout.
    latest = now + timeout + LOOP_LAG_ALLOWANCE if patient else now + timeout
    attempt = AttemptWatch(dog, task, now + timeout, timeout, patient, latest, answering)
    dog.add(attempt)
    return attempt
