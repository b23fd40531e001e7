"""The retries of one call: one iterator, driven by the sync and the async caller alike.

As stamina's ``retry_context``, the policy lives in one place and the caller only runs
the attempts. :class:`RetryRun` starts after a first attempt that failed (or returned a
retryable result; the first attempt runs without any of this): each step yields the wait
before the next attempt, which the caller sleeps its own way, then runs inside
``with run.attempt() as attempt:`` setting ``attempt.result``. When tenacity stops, the
iteration ends with :attr:`RetryRun.outcome` (the last result), or raises the last
exception.

hardenkit's stop rules come on top of the policy's own: ``max_total`` (the waits and the
next attempt must fit), the request deadline, ``max_retry_after`` and the retry budget.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

from tenacity import DoSleep, RetryCallState, Retrying, stop_after_attempt

from hardenkit.context import remaining_time
from hardenkit.resilience._config import CONFIG
from hardenkit.resilience._retry_after import retry_after_of
from hardenkit.telemetry import retries

if TYPE_CHECKING:
    from hardenkit.resilience.budget import RetryBudget
    from hardenkit.resilience.retry import Retry

__all__ = ["Policy", "RetryRun"]


class _Attempts:
    """What the stop strategy needs to know about the attempts so far."""

    __slots__ = ("last_duration", "stopped_by")

    def __init__(self, last_duration: float) -> None:
        self.last_duration = last_duration
        self.stopped_by: str | None = None


class _Stop:
    """Tenacity stop strategy adding hardenkit's rules to the policy's own."""

    def __init__(self, policy: Retry, budget: RetryBudget | None, attempts: _Attempts) -> None:
        self._policy = policy
        self._attempts = attempts
        self._budget = budget
        limit = stop_after_attempt(policy.attempts)
        self._base = limit if policy.stop is None else limit | policy.stop

    def _stop(self, reason: str) -> bool:
        self._attempts.stopped_by = reason
        return True

    def __call__(self, state: RetryCallState) -> bool:
        policy = self._policy
        if self._base(state):
            return self._stop("attempts")
        retry_after = retry_after_of(state.outcome)
        if retry_after is not None and retry_after > policy.max_retry_after:
            return self._stop("retry_after_too_long")
        sleep = state.upcoming_sleep
        needed = sleep + self._attempts.last_duration
        elapsed = time.monotonic() - state.start_time
        if CONFIG.testing:
            elapsed += state.idle_for  # the waits that were skipped still count
        if elapsed + needed > policy.max_total:
            return self._stop("max_total")
        left = remaining_time()
        if left is not None and needed >= left:
            return self._stop("deadline")
        if self._budget is not None and not self._budget.try_withdraw():
            return self._stop("budget")
        return False


class _Wait:
    """Tenacity wait strategy: the policy's backoff, never shorter than Retry-After."""

    def __init__(self, policy: Retry) -> None:
        self._policy = policy

    def __call__(self, state: RetryCallState) -> float:
        wait = float(self._policy.wait(state))
        retry_after = retry_after_of(state.outcome)
        if retry_after is not None and retry_after > wait:
            wait = retry_after
        return wait


def _last_outcome(state: RetryCallState) -> Any:
    assert state.outcome is not None  # noqa: S101 - tenacity stops after an outcome
    return state.outcome.result()


class Policy(Protocol):
    """What a retry run reads of the outbound policy (a ``Resilient``)."""

    name: str
    retry: Retry | None
    budget: RetryBudget | None


class RetryRun:
    """The retries after the first attempt of a call through ``owner``.

    Args:
        owner: The policy: its ``name`` (the ``hardenkit.resilience.retries`` metric's
            attribute), ``retry`` (the retry policy) and ``budget`` (withdrawn from for
            each retry, if any).
        fn, args, kwargs: The call, as tenacity records it.
        start: ``time.monotonic()`` when the first attempt began.
        error: What the first attempt raised, or ``None``.
        result: What it returned, when it raised nothing.
    """

    __slots__ = ("_attempts", "_name", "_retrying", "_state", "outcome")

    def __init__(
        self,
        owner: Policy,
        *,
        fn: Callable[..., Any],
        args: Any,
        kwargs: Any,
        start: float,
        error: BaseException | None,
        result: Any,
    ) -> None:
        policy = owner.retry
        if policy is None:
            raise ValueError(f"{owner.name!r} has no retry policy")
        self._name = owner.name
        self._attempts = _Attempts(time.monotonic() - start)
        self._retrying = Retrying(
            stop=_Stop(policy, owner.budget, self._attempts),
            wait=_Wait(policy),
            retry=policy.retry_on,
            retry_error_callback=_last_outcome,
        )
        self._retrying.begin()
        state = RetryCallState(self._retrying, fn, args, kwargs)
        state.start_time = start
        if error is not None:
            state.set_exception((type(error), error, error.__traceback__))
        else:
            state.set_result(result)
        self._state = state
        self.outcome: Any = None

    def __iter__(self) -> Iterator[float]:
        """Yield the wait before each retry; raise the last exception when it is final."""
        while True:
            action = self._retrying.iter(self._state)
            if not isinstance(action, DoSleep):
                self.outcome = action
                return
            retries.add(1, {"policy": self._name})
            self._state.prepare_for_next_attempt()
            yield float(action)

    def attempt(self) -> Attempt:
        """The context of one retry: its duration and outcome go to the policy."""
        return Attempt(self)


class Attempt:
    """One retry: an exception leaving the block is kept for the policy to judge.

    Attributes:
        result: What the attempt returned; set it inside the block.
    """

    __slots__ = ("_began", "_run", "result")

    def __init__(self, run: RetryRun) -> None:
        self._run = run
        self._began = 0.0
        self.result: Any = None

    def __enter__(self) -> Attempt:
        self._began = time.monotonic()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        run = self._run
        if error is None:
            run._state.set_result(self.result)
        elif isinstance(error, Exception):
            run._state.set_exception((type(error), error, traceback))
        else:
            return False  # cancellation, KeyboardInterrupt: not for the policy to judge
        run._attempts.last_duration = time.monotonic() - self._began
        return True
