"""The circuit breaker: a state machine over a sliding window of call outcomes.

Semantics follow Resilience4j, the most complete breaker in common use:

* ``CLOSED``: calls pass and are recorded in a count- or time-based sliding window. Once
  the window holds ``minimum_calls`` outcomes, a failure rate or slow-call rate at or
  above its threshold opens the breaker (and clears the window).
* ``OPEN``: calls are refused with :class:`CircuitOpenError` carrying the remaining wait.
  The wait is ``wait_in_open``, multiplied by ``wait_multiplier`` for every consecutive
  re-opening, capped at ``max_wait_in_open``.
* ``HALF_OPEN``: the first call after the wait moves the breaker here; exactly
  ``permitted_calls_in_half_open`` trial calls pass, later ones are refused. When all
  trials have finished, their failure and slow-call rates decide: open again, or close.
* ``FORCED_OPEN`` / ``DISABLED``: set by an operator; refuse everything / let everything
  through unmeasured, until :meth:`CircuitBreaker.reset`.

The state lives behind a :class:`threading.Lock` that is never held across an ``await``,
so one breaker serves threads and coroutines alike. Events are emitted after the lock is
released.
"""

from __future__ import annotations

import functools
import inspect
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, TypeVar

from hardenkit.resilience.errors import CircuitOpenError
from hardenkit.resilience.events import BreakerState, StateChange, StateListener, emit_state_change
from hardenkit.resilience.windows import CountWindow, TimeWindow

if TYPE_CHECKING:
    from hardenkit.resilience.shared import RedisBreakerStore

__all__ = ["BreakerConfig", "CircuitBreaker", "Measurement", "SharedStart", "Started"]

P = ParamSpec("P")
R = TypeVar("R")

WindowType = Literal["count", "time"]

_REFUSING = (BreakerState.OPEN, BreakerState.FORCED_OPEN)


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    """How a breaker decides; validated once, immutable after (see :class:`CircuitBreaker`)."""

    window: WindowType = "count"
    window_size: int = 20
    minimum_calls: int = 10
    failure_rate_threshold: float = 50.0
    slow_call_duration: float | None = None
    slow_call_rate_threshold: float = 100.0
    permitted_calls_in_half_open: int = 3
    wait_in_open: float = 30.0
    wait_multiplier: float = 1.0
    max_wait_in_open: float | None = None

    def __post_init__(self) -> None:
        if self.window not in ("count", "time"):
            raise ValueError("window must be 'count' or 'time'")
        if self.window_size < 1 or self.minimum_calls < 1:
            raise ValueError("window_size and minimum_calls must be at least 1")
        if self.permitted_calls_in_half_open < 1:
            raise ValueError("permitted_calls_in_half_open must be at least 1")
        for name in ("failure_rate_threshold", "slow_call_rate_threshold"):
            value = getattr(self, name)
            if not 0 < value <= 100:
                raise ValueError(f"{name} must be a percentage in (0, 100]")
        if self.wait_in_open <= 0 or self.wait_multiplier < 1:
            raise ValueError("wait_in_open must be positive and wait_multiplier at least 1")
        if self.max_wait_in_open is not None and self.max_wait_in_open < self.wait_in_open:
            raise ValueError("max_wait_in_open must be at least wait_in_open")
        if self.slow_call_duration is not None and self.slow_call_duration <= 0:
            raise ValueError("slow_call_duration must be positive")

    def open_wait(self, consecutive_opens: int) -> float:
        """Seconds to stay open after the ``consecutive_opens``-th opening in a row."""
        wait = self.wait_in_open * self.wait_multiplier ** max(0, consecutive_opens - 1)
        if self.max_wait_in_open is not None:
            wait = min(wait, self.max_wait_in_open)
        return wait


def _rates(total: int, failed: int, slow: int) -> tuple[float, float]:
    return failed * 100.0 / total, slow * 100.0 / total


class CircuitBreaker:
    """A named circuit breaker for one dependency (a provider, a host).

    Use it as a decorator on sync or async callables, through :meth:`call` /
    :meth:`call_async`, or inside :func:`~hardenkit.resilient`.

    Args:
        name: Names the breaker in logs, metrics, readiness and Redis keys.
        window: ``"count"`` (the last ``window_size`` calls) or ``"time"`` (the calls of
            the last ``window_size`` seconds).
        window_size: Calls or seconds in the sliding window.
        minimum_calls: Outcomes the window must hold before rates are judged.
        failure_rate_threshold: Percent of failed calls that opens the breaker.
        slow_call_duration: Seconds after which a call counts as slow (``None``: never).
        slow_call_rate_threshold: Percent of slow calls that opens the breaker.
        permitted_calls_in_half_open: Trial calls let through after the wait.
        wait_in_open: Seconds to stay open before the trial calls.
        wait_multiplier: Factor applied to the wait on each consecutive re-opening.
        max_wait_in_open: Cap on the grown wait (``None``: no cap).
        record_exceptions: Exceptions that count as failures; any other exception counts
            as a success (the dependency answered; the caller's input was wrong).
        ignore_exceptions: Exceptions that count as nothing at all (checked first).
        failure_result: Predicate telling whether a returned value is a failure (an HTTP
            503 response, say).
        on_state_change: Callbacks told about every transition.
        clock: Monotonic clock in seconds; replace it in tests.
        store: Shares the state with every process using the same name through Redis
            (async calls only; see :class:`~hardenkit.resilience.shared.RedisBreakerStore`).
    """

    def __init__(
        self,
        name: str,
        *,
        window: WindowType = "count",
        window_size: int = 20,
        minimum_calls: int = 10,
        failure_rate_threshold: float = 50.0,
        slow_call_duration: float | None = None,
        slow_call_rate_threshold: float = 100.0,
        permitted_calls_in_half_open: int = 3,
        wait_in_open: float = 30.0,
        wait_multiplier: float = 1.0,
        max_wait_in_open: float | None = None,
        record_exceptions: tuple[type[BaseException], ...] = (Exception,),
        ignore_exceptions: tuple[type[BaseException], ...] = (),
        failure_result: Callable[[Any], bool] | None = None,
        on_state_change: Iterable[StateListener] = (),
        clock: Callable[[], float] = time.monotonic,
        store: RedisBreakerStore | None = None,
    ) -> None:
        if not name:
            raise ValueError("a circuit breaker needs a name")
        self.name = name
        self.config = BreakerConfig(
            window=window,
            window_size=window_size,
            minimum_calls=minimum_calls,
            failure_rate_threshold=failure_rate_threshold,
            slow_call_duration=slow_call_duration,
            slow_call_rate_threshold=slow_call_rate_threshold,
            permitted_calls_in_half_open=permitted_calls_in_half_open,
            wait_in_open=wait_in_open,
            wait_multiplier=wait_multiplier,
            max_wait_in_open=max_wait_in_open,
        )
        self.record_exceptions = record_exceptions
        self.ignore_exceptions = ignore_exceptions
        self.failure_result = failure_result
        self.listeners: list[StateListener] = list(on_state_change)
        self.clock = clock
        self.store = store
        self._lock = threading.Lock()
        self._window = CountWindow(window_size) if window == "count" else TimeWindow(window_size)
        self._time_window = window == "time"
        self._timed = slow_call_duration is not None
        self._state = BreakerState.CLOSED
        self._open_until = 0.0
        self._consecutive_opens = 0
        self._trials_left = 0
        self._trial_total = 0
        self._trial_failed = 0
        self._trial_slow = 0

    def __repr__(self) -> str:
        return f"CircuitBreaker({self.name!r}, state={self._state.value!r})"

    # --- reading -----------------------------------------------------------------------

    @property
    def state(self) -> BreakerState:
        """The current state (an elapsed wait moves ``OPEN`` to ``HALF_OPEN`` here)."""
        if self._state is BreakerState.OPEN:
            change = None
            with self._lock:
                if self._state is BreakerState.OPEN and self.clock() >= self._open_until:
                    change = self._to_half_open()
            self._emit(change)
        return self._state

    def remaining_wait(self) -> float:
        """Seconds until an open breaker lets trial calls through (0 when not open)."""
        if self._state is not BreakerState.OPEN:
            return 0.0
        return max(0.0, self._open_until - self.clock())

    def snapshot(self) -> dict[str, Any]:
        """State and window figures, as shown by ``/readyz`` and ``hardenkit doctor``."""
        state = self.state
        with self._lock:
            self._window.advance(self.clock())
            total, failed, slow = self._window.total, self._window.failed, self._window.slow
        report: dict[str, Any] = {"state": state.value, "calls": total}
        if total:
            report["failure_rate"] = round(failed * 100.0 / total, 1)
            report["slow_call_rate"] = round(slow * 100.0 / total, 1)
        if state is BreakerState.OPEN:
            report["retry_after_seconds"] = round(self.remaining_wait(), 3)
        if self.store is not None:
            report["shared"] = True
        return report

    # --- the protocol: acquire a permission, then record exactly one outcome ------------

    def acquire(self) -> None:
        """Ask to make one call; raise :class:`CircuitOpenError` when it is refused.

        Every successful ``acquire`` must be followed by exactly one of
        :meth:`record_success`, :meth:`record_failure` or :meth:`release`.
        """
        state = self._state
        if state is BreakerState.CLOSED or state is BreakerState.DISABLED:
            return
        change = None
        refused: float | Literal[False] | None = False
        with self._lock:
            state = self._state
            if state is BreakerState.OPEN:
                now = self.clock()
                if now >= self._open_until:
                    change = self._to_half_open()
                    state = self._state
                else:
                    refused = self._open_until - now
            if state is BreakerState.FORCED_OPEN:
                refused = None
            elif state is BreakerState.HALF_OPEN:
                if self._trials_left > 0:
                    self._trials_left -= 1
                else:
                    refused = 0.0
        self._emit(change)
        if refused is not False:
            raise CircuitOpenError(self.name, refused)

    def record_success(self, duration: float) -> None:
        """Record a call that answered, taking ``duration`` seconds."""
        self._record(False, duration)

    def record_failure(self, duration: float) -> None:
        """Record a call that failed after ``duration`` seconds."""
        self._record(True, duration)

    def release(self) -> None:
        """Give back a permission whose call counts as nothing (ignored, cancelled)."""
        if self._state is BreakerState.HALF_OPEN:
            with self._lock:
                if self._state is BreakerState.HALF_OPEN:
                    self._trials_left += 1

    def record_outcome(
        self, duration: float, error: BaseException | None = None, result: Any = None
    ) -> None:
        """Record an exception or a result, classified by this breaker's rules."""
        if error is not None:
            if self.ignore_exceptions and isinstance(error, self.ignore_exceptions):
                self.release()
            elif isinstance(error, self.record_exceptions):
                self._record(True, duration)
            elif isinstance(error, Exception):
                self._record(False, duration)
            else:  # cancellation, KeyboardInterrupt: the dependency said nothing
                self.release()
            return
        failed = self.failure_result is not None and bool(self.failure_result(result))
        self._record(failed, duration)

    def is_failure_result(self, result: Any) -> bool:
        """Whether ``result`` counts as a failure for this breaker."""
        return self.failure_result is not None and bool(self.failure_result(result))

    def _record(self, failed: bool, duration: float) -> None:
        threshold = self.config.slow_call_duration
        self.record_flags(failed, threshold is not None and duration >= threshold)

    def record_flags(self, failed: bool, slow: bool) -> None:
        """Record one outcome already classified as failed and/or slow."""
        change = None
        with self._lock:
            state = self._state
            if state is BreakerState.CLOSED:
                window = self._window
                window.add(failed, slow, self.clock())
                if (window.failed or window.slow) and window.total >= self.config.minimum_calls:
                    change = self._judge(window.total, window.failed, window.slow, "closed")
            elif state is BreakerState.HALF_OPEN:
                self._trial_total += 1
                self._trial_failed += failed
                self._trial_slow += slow
                if self._trial_total >= self.config.permitted_calls_in_half_open:
                    change = self._judge(
                        self._trial_total, self._trial_failed, self._trial_slow, "half_open"
                    )
        self._emit(change)

    # --- transitions (called with the lock held) ----------------------------------------

    def _judge(self, total: int, failed: int, slow: int, phase: str) -> StateChange | None:
        failure_rate, slow_rate = _rates(total, failed, slow)
        config = self.config
        if failure_rate >= config.failure_rate_threshold:
            reason = "failure_rate" if phase == "closed" else "trial_failed"
            return self._to_open(reason, failure_rate, slow_rate)
        if slow_rate >= config.slow_call_rate_threshold:
            reason = "slow_call_rate" if phase == "closed" else "trial_failed"
            return self._to_open(reason, failure_rate, slow_rate)
        if phase == "half_open":
            return self._transition(BreakerState.CLOSED, "trial_succeeded", failure_rate, slow_rate)
        return None

    def _to_open(self, reason: str, failure_rate: float, slow_rate: float) -> StateChange:
        self._consecutive_opens += 1
        self._open_until = self.clock() + self.config.open_wait(self._consecutive_opens)
        return self._transition(BreakerState.OPEN, reason, failure_rate, slow_rate)

    def _to_half_open(self) -> StateChange:
        self._trials_left = self.config.permitted_calls_in_half_open
        self._trial_total = self._trial_failed = self._trial_slow = 0
        return self._transition(BreakerState.HALF_OPEN, "wait_elapsed")

    def _transition(
        self,
        target: BreakerState,
        reason: str,
        failure_rate: float | None = None,
        slow_rate: float | None = None,
    ) -> StateChange:
        previous = self._state
        self._state = target
        self._window.reset()
        if target is BreakerState.CLOSED:
            self._consecutive_opens = 0
        return StateChange(self.name, previous, target, reason, failure_rate, slow_rate)

    def _emit(self, change: StateChange | None) -> None:
        if change is not None and change.previous is not change.current:
            emit_state_change(change, self.listeners)

    # --- operators ----------------------------------------------------------------------

    def force_open(self) -> None:
        """Refuse every call until :meth:`reset` (an operator's kill switch)."""
        self._operator(BreakerState.FORCED_OPEN)

    def disable(self) -> None:
        """Let every call through unmeasured until :meth:`reset`."""
        self._operator(BreakerState.DISABLED)

    def reset(self) -> None:
        """Close the breaker and forget everything it measured."""
        self._operator(BreakerState.CLOSED)

    def _operator(self, target: BreakerState) -> None:
        with self._lock:
            change = self._transition(target, "operator")
        self._emit(change)

    def adopt(self, state: BreakerState, remaining_wait: float) -> None:
        """Mirror a state decided elsewhere (the shared store), without emitting events."""
        if self._state in (BreakerState.FORCED_OPEN, BreakerState.DISABLED):
            return
        with self._lock:
            if state is not self._state:
                self._window.reset()
                self._state = state
            if state is BreakerState.OPEN:
                self._open_until = self.clock() + remaining_wait
            elif state is BreakerState.HALF_OPEN:
                self._trials_left = 0

    # --- calling ------------------------------------------------------------------------

    def record_plain_success(self) -> None:
        """Record a success whose duration does not matter (slow calls are not tracked).

        A full count window without failures or slow calls does not change when one more
        success replaces a success, so the healthy path skips the lock altogether.
        """
        window = self._window
        if window.failed or window.slow or window.total < window.size or self._time_window:
            self.record_flags(False, False)

    def begin(self) -> Started:
        """Ask to make one call; raise :class:`CircuitOpenError` when it is refused.

        Returns what :meth:`end` needs to record the call: the start time when the call
        is timed or needed a permission, ``None`` on the healthy path (closed, slow calls
        not tracked), which asks for nothing and reads no clock.
        """
        if self._state is BreakerState.CLOSED and not self._timed:
            return None
        self.acquire()
        return self.clock()

    def end(self, started: Started, error: BaseException | None = None, result: Any = None) -> None:
        """Record the outcome of a call :meth:`begin` let through: ``error``, else ``result``."""
        if error is None and (started is None or not self._timed):
            if self.failure_result is not None and self.failure_result(result):
                self.record_flags(True, False)
            else:
                self.record_plain_success()
        elif isinstance(started, SharedStart):
            raise TypeError("a call begun with begin_async() ends with end_async()")
        else:
            duration = 0.0 if started is None else self.clock() - started
            self.record_outcome(duration, error, result)

    async def begin_async(self) -> Started:
        """Like :meth:`begin`, asking the shared store when there is one.

        Callers on a hot path skip the coroutine when :attr:`store` is ``None`` and call
        :meth:`begin` (and :meth:`end`) instead: the result is the same.
        """
        if self.store is None:
            return self.begin()
        await self.acquire_async()
        return SharedStart(self.clock())

    async def end_async(
        self, started: Started, error: BaseException | None = None, result: Any = None
    ) -> None:
        """Like :meth:`end`, writing to the shared store when the call began there."""
        if isinstance(started, SharedStart):
            await self.record_async(self.clock() - started.at, error, result)
        else:
            self.end(started, error, result)

    def measure(self) -> Measurement:
        """Measure a block: ``with breaker.measure() as call: call.result = fn()``.

        Entering is :meth:`begin`, leaving is :meth:`end` with the exception that left
        the block, else ``call.result``; ``async with`` uses :meth:`begin_async` and
        :meth:`end_async`.
        """
        return Measurement(self)

    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call ``fn`` through the breaker (sync; the state stays local to this process)."""
        started = self.begin()
        try:
            result = fn(*args, **kwargs)
        except BaseException as error:
            self.end(started, error)
            raise
        self.end(started, None, result)
        return result

    async def acquire_async(self) -> None:
        """Like :meth:`acquire`, consulting the shared store when there is one."""
        store = self.store
        if store is None or self._state in (BreakerState.FORCED_OPEN, BreakerState.DISABLED):
            self.acquire()
            return
        await store.acquire(self)

    async def record_async(
        self, duration: float, error: BaseException | None = None, result: Any = None
    ) -> None:
        """Like :meth:`record_outcome`, writing to the shared store when there is one."""
        store = self.store
        if store is None or self._state in (BreakerState.FORCED_OPEN, BreakerState.DISABLED):
            self.record_outcome(duration, error, result)
            return
        if error is not None:
            if (self.ignore_exceptions and isinstance(error, self.ignore_exceptions)) or not (
                isinstance(error, Exception)
            ):
                await store.release(self)
                return
            failed = isinstance(error, self.record_exceptions)
        else:
            failed = self.is_failure_result(result)
        threshold = self.config.slow_call_duration
        await store.record(self, failed, threshold is not None and duration >= threshold)

    async def call_async(
        self, fn: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs
    ) -> R:
        """Await ``fn`` through the breaker (shared through Redis when a store is set)."""
        if self.store is not None:
            async with Measurement(self) as call:
                call.result = result = await fn(*args, **kwargs)
            return result
        started = self.begin()
        try:
            result = await fn(*args, **kwargs)
        except BaseException as error:
            self.end(started, error)
            raise
        self.end(started, None, result)
        return result

    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]:
        """Decorate a sync or async callable."""
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                return await self.call_async(fn, *args, **kwargs)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            return self.call(fn, *args, **kwargs)

        return wrapper


class SharedStart:
    """The start of a call that asked the shared store (see :meth:`CircuitBreaker.begin_async`)."""

    __slots__ = ("at",)

    def __init__(self, at: float) -> None:
        self.at = at


Started = float | SharedStart | None
"""What :meth:`CircuitBreaker.begin` returns for :meth:`CircuitBreaker.end`."""


class Measurement:
    """One block measured by a breaker (:meth:`CircuitBreaker.measure`).

    Nothing is suppressed: the block's exception goes on.

    Attributes:
        result: What the block produced; set it inside the block.
    """

    __slots__ = ("_breaker", "_started", "result")

    def __init__(self, breaker: CircuitBreaker) -> None:
        self._breaker = breaker
        self._started: Started = None
        self.result: Any = None

    def __enter__(self) -> Measurement:
        self._started = self._breaker.begin()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._breaker.end(self._started, error, self.result)

    async def __aenter__(self) -> Measurement:
        self._started = await self._breaker.begin_async()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._breaker.end_async(self._started, error, self.result)
