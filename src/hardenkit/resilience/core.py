"""``resilient(name)``: deadline → retry → circuit breaker → timeout → bulkhead → call.

The order is fixed because each layer must see what the next one does::

    deadline   narrows the time budget (request deadline, ``deadline=``)
    retry      decides on each outcome; every attempt below is one retry step
    breaker    sees every attempt, so a failing dependency opens it mid-retry,
               and an open breaker ends the retries (CircuitOpenError is final)
    timeout    bounds one attempt, clamped to the time left; a timeout is a failure
    bulkhead   the wait for a slot counts against the attempt's timeout
    call

The success path pays no tenacity machinery: the first attempt runs directly, and
tenacity's ``Retrying`` is built only once an attempt has failed (or returned a
retryable response). A sync attempt never starts a thread or a task.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, ParamSpec, TypeVar, cast, overload

from tenacity import DoSleep, RetryCallState, Retrying, stop_after_attempt

from hardenkit import _timer
from hardenkit._settings.resilience import resilient_overrides
from hardenkit.context import deadline_var, remaining_time, set_deadline
from hardenkit.errors import ConfigurationError
from hardenkit.resilience import testing
from hardenkit.resilience.breaker import CircuitBreaker
from hardenkit.resilience.budget import RetryBudget
from hardenkit.resilience.bulkhead import Bulkhead
from hardenkit.resilience.errors import AttemptTimeoutError, DeadlineExceededError
from hardenkit.resilience.registry import ResilienceRegistry, default_registry
from hardenkit.resilience.retry import Retry, retry_after_of
from hardenkit.telemetry import retries, timeouts

__all__ = ["Resilient", "resilient"]

P = ParamSpec("P")
R = TypeVar("R")

_MISSING: Any = object()

_BREAKER_KEYS = (
    "failure_rate_threshold",
    "slow_call_duration",
    "minimum_calls",
    "window_size",
    "wait_in_open",
)


class _Attempts:
    """What the stop strategy needs to know about the attempts so far."""

    __slots__ = ("last_duration", "stopped_by")

    def __init__(self, last_duration: float) -> None:
        self.last_duration = last_duration
        self.stopped_by: str | None = None


class _Stop:
    """Tenacity stop strategy adding hardenkit's rules to the policy's own."""

    def __init__(self, owner: Resilient, attempts: _Attempts) -> None:
        policy = owner.retry
        assert policy is not None  # noqa: S101 - only built when retrying
        self._policy = policy
        self._attempts = attempts
        self._budget = owner.budget
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
        if testing.is_testing():
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


class Resilient:
    """A configured outbound policy: call through it, or use it as a decorator.

    Build it with :func:`resilient`; the arguments are documented there.
    """

    def __init__(
        self,
        name: str,
        *,
        retry: Retry | None,
        breaker: CircuitBreaker | None,
        timeout: float | None,
        bulkhead: Bulkhead | None = None,
        deadline: float | None = None,
        budget: RetryBudget | None = None,
    ) -> None:
        if timeout is not None and timeout <= 0:
            raise ValueError("timeout must be positive (or None)")
        if deadline is not None and deadline <= 0:
            raise ValueError("deadline must be positive (or None)")
        self.name = name
        self.retry = retry if retry is None or retry.attempts > 1 else None
        self.breaker = breaker
        self.timeout = timeout
        self.bulkhead = bulkhead
        self.deadline = deadline
        self.budget = budget if budget is not None else (retry.budget if retry else None)
        self._result_gate = self.retry.result_gate if self.retry is not None else None

    def __repr__(self) -> str:
        return (
            f"Resilient({self.name!r}, timeout={self.timeout}, retry={self.retry}, "
            f"breaker={self.breaker}, bulkhead={self.bulkhead})"
        )

    # --- decorator ----------------------------------------------------------------------

    @overload
    def __call__(self, fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]: ...
    @overload
    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]: ...
    def __call__(self, fn: Callable[P, Any]) -> Callable[P, Any]:
        """Decorate a sync or async callable."""
        if inspect.iscoroutinefunction(fn):
            # Without a deadline of its own, skip one coroutine level on every call.
            call_async = self.call_async if self.deadline is not None else None
            run_async = self._run_async

            @functools.wraps(fn)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                if call_async is None:
                    return await run_async(fn, args, kwargs)
                return await call_async(fn, *args, **kwargs)

            return async_wrapper
        call = self.call

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            return call(fn, *args, **kwargs)

        return wrapper

    # --- sync ---------------------------------------------------------------------------

    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call ``fn`` through every layer, in this thread."""
        if self.deadline is None:
            return self._run(fn, args, kwargs)
        token = set_deadline(self.deadline)
        try:
            return self._run(fn, args, kwargs)
        finally:
            deadline_var.reset(token)

    def _run(self, fn: Callable[..., R], args: Any, kwargs: Any) -> R:
        if self.retry is None:
            return self._attempt(fn, args, kwargs)
        if self.budget is not None:
            self.budget.deposit()
        start = time.monotonic()
        try:
            result = self._attempt(fn, args, kwargs)
        except Exception as error:  # noqa: BLE001 - the retry policy judges every error
            return cast(
                "R", self._retry(fn, args, kwargs, start=start, error=error, result=_MISSING)
            )
        gate = self._result_gate
        if gate is None or gate(result):
            return cast("R", self._retry(fn, args, kwargs, start=start, error=None, result=result))
        return result

    def _attempt_timeout(self) -> float | None:
        timeout = self.timeout
        left = remaining_time()
        if left is not None:
            if left <= 0:
                raise DeadlineExceededError(self.name)
            if timeout is None or left < timeout:
                return left
        return timeout

    def _attempt(self, fn: Callable[..., R], args: Any, kwargs: Any) -> R:
        timeout = self._attempt_timeout()
        breaker = self.breaker
        if breaker is None:
            return self._bounded(fn, args, kwargs, timeout)
        breaker.acquire()
        clock = breaker.clock
        start = clock()
        try:
            result = self._bounded(fn, args, kwargs, timeout)
        except BaseException as error:
            breaker.record_outcome(clock() - start, error)
            raise
        if breaker._timed or breaker.failure_result is not None:
            breaker.record_outcome(clock() - start, None, result)
        else:
            breaker.record_plain_success()
        return result

    def _bounded(self, fn: Callable[..., R], args: Any, kwargs: Any, timeout: float | None) -> R:
        # A sync call cannot be interrupted safely: the attempt's budget is published as
        # the deadline, which clients read (remaining_time(), the httpx transport) to
        # set their socket timeouts; the retry layer checks it between attempts.
        token = set_deadline(timeout) if timeout is not None else None
        bulkhead = self.bulkhead
        try:
            if bulkhead is None:
                return fn(*args, **kwargs)
            bulkhead.acquire()
            try:
                return fn(*args, **kwargs)
            finally:
                bulkhead.release()
        finally:
            if token is not None:
                deadline_var.reset(token)

    def _retrying(self, attempts: _Attempts) -> Retrying:
        assert self.retry is not None  # noqa: S101
        return Retrying(
            stop=_Stop(self, attempts),
            wait=_Wait(self.retry),
            retry=self.retry.retry_on,
            retry_error_callback=_last_outcome,
        )

    def _start_state(
        self,
        retrying: Retrying,
        fn: Callable[..., Any],
        args: Any,
        kwargs: Any,
        *,
        start: float,
        error: BaseException | None,
        result: Any,
    ) -> RetryCallState:
        retrying.begin()
        state = RetryCallState(retrying, fn, args, kwargs)
        state.start_time = start
        if error is not None:
            state.set_exception((type(error), error, error.__traceback__))
        else:
            state.set_result(result)
        return state

    def _retry(
        self,
        fn: Callable[..., Any],
        args: Any,
        kwargs: Any,
        *,
        start: float,
        error: BaseException | None,
        result: Any,
    ) -> Any:
        attempts = _Attempts(time.monotonic() - start)
        retrying = self._retrying(attempts)
        state = self._start_state(
            retrying, fn, args, kwargs, start=start, error=error, result=result
        )
        while True:
            action = retrying.iter(state)
            if not isinstance(action, DoSleep):
                return action
            self._count_retry(state)
            state.prepare_for_next_attempt()
            testing.sleep(float(action))
            began = time.monotonic()
            try:
                state.set_result(self._attempt(fn, args, kwargs))
            except Exception:  # noqa: BLE001 - recorded for the retry policy to judge
                state.set_exception(cast("Any", sys.exc_info()))
            attempts.last_duration = time.monotonic() - began

    def _count_retry(self, state: RetryCallState) -> None:
        retries.add(1, {"policy": self.name})

    # --- async --------------------------------------------------------------------------

    async def call_async(
        self, fn: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs
    ) -> R:
        """Await ``fn`` through every layer; the timeout cancels the attempt."""
        if self.deadline is None:
            return await self._run_async(fn, args, kwargs)
        token = set_deadline(self.deadline)
        try:
            return await self._run_async(fn, args, kwargs)
        finally:
            deadline_var.reset(token)

    async def _run_async(self, fn: Callable[..., Awaitable[R]], args: Any, kwargs: Any) -> R:
        if self.retry is None:
            return await self._attempt_async(fn, args, kwargs)
        if self.budget is not None:
            self.budget.deposit()
        start = time.monotonic()
        try:
            result = await self._attempt_async(fn, args, kwargs)
        except Exception as error:  # noqa: BLE001 - the retry policy judges every error
            return cast(
                "R",
                await self._retry_async(
                    fn, args, kwargs, start=start, error=error, result=_MISSING
                ),
            )
        gate = self._result_gate
        if gate is None or gate(result):
            return cast(
                "R",
                await self._retry_async(fn, args, kwargs, start=start, error=None, result=result),
            )
        return result

    async def _attempt_async(self, fn: Callable[..., Awaitable[R]], args: Any, kwargs: Any) -> R:
        timeout = self._attempt_timeout()
        breaker = self.breaker
        if breaker is None:
            return await self._bounded_async(fn, args, kwargs, timeout)
        shared = breaker.store is not None
        if shared:
            await breaker.acquire_async()
        else:
            breaker.acquire()
        clock = breaker.clock
        start = clock()
        try:
            result = await self._bounded_async(fn, args, kwargs, timeout)
        except BaseException as error:
            if shared:
                await breaker.record_async(clock() - start, error)
            else:
                breaker.record_outcome(clock() - start, error)
            raise
        if shared:
            await breaker.record_async(clock() - start, None, result)
        elif breaker._timed or breaker.failure_result is not None:
            breaker.record_outcome(clock() - start, None, result)
        else:
            breaker.record_plain_success()
        return result

    async def _bounded_async(
        self, fn: Callable[..., Awaitable[R]], args: Any, kwargs: Any, budget: float | None
    ) -> R:
        if budget is None:
            if self.bulkhead is None:
                return await fn(*args, **kwargs)
            return await self._bulkheaded_async(fn, args, kwargs)
        token = set_deadline(budget)
        # The watchdog cancels the attempt in the current task: no task is created, so
        # none can be left behind (see _timer.py for why not asyncio.timeout).
        attempt = _timer.watch(budget)
        try:
            if self.bulkhead is None:
                return await fn(*args, **kwargs)
            return await self._bulkheaded_async(fn, args, kwargs)
        except asyncio.CancelledError:
            if attempt.timed_out():
                timeouts.add(1, {"kind": "outbound"})
                raise AttemptTimeoutError(self.name, budget) from None
            raise
        finally:
            attempt.done()
            deadline_var.reset(token)

    async def _bulkheaded_async(self, fn: Callable[..., Awaitable[R]], args: Any, kwargs: Any) -> R:
        bulkhead = self.bulkhead
        if bulkhead is None:
            return await fn(*args, **kwargs)
        await bulkhead.acquire_async()
        try:
            return await fn(*args, **kwargs)
        finally:
            bulkhead.release()

    async def _retry_async(
        self,
        fn: Callable[..., Awaitable[Any]],
        args: Any,
        kwargs: Any,
        *,
        start: float,
        error: BaseException | None,
        result: Any,
    ) -> Any:
        attempts = _Attempts(time.monotonic() - start)
        retrying = self._retrying(attempts)
        state = self._start_state(
            retrying, fn, args, kwargs, start=start, error=error, result=result
        )
        while True:
            action = retrying.iter(state)
            if not isinstance(action, DoSleep):
                return action
            self._count_retry(state)
            state.prepare_for_next_attempt()
            await testing.sleep_async(float(action))
            began = time.monotonic()
            try:
                state.set_result(await self._attempt_async(fn, args, kwargs))
            except Exception:  # noqa: BLE001 - recorded for the retry policy to judge
                state.set_exception(cast("Any", sys.exc_info()))
            attempts.last_duration = time.monotonic() - began


def resilient(
    name: str,
    *,
    timeout: float | None = 10.0,
    attempts: int | None = None,
    retry: Retry | None = None,
    breaker: CircuitBreaker | bool = True,
    bulkhead: Bulkhead | int | None = None,
    deadline: float | None = None,
    budget: RetryBudget | bool = True,
    registry: ResilienceRegistry | None = None,
) -> Resilient:
    """Build the outbound policy called ``name``: one decorator for sync and async.

    ``@resilient("openai", timeout=10, attempts=3)`` composes deadline → retry →
    circuit breaker → timeout → bulkhead → call. Every argument can be overridden per
    name from the environment (``HARDENKIT_RESILIENT_OPENAI_TIMEOUT=20``; see
    docs/resilience.md), so operators tune a dependency without a release.

    Args:
        name: The dependency (``"openai"``, ``"payments"``). Objects of the same name
            (breaker, bulkhead, retry budget) are shared through the registry.
        timeout: Seconds one attempt may take (``None``: only the deadline bounds it).
            Async attempts are cancelled; sync ones publish it as the deadline for the
            client's own socket timeouts (see the docs for what that can interrupt).
        attempts: Attempts in all; shorthand for ``retry=Retry(attempts=...)``.
        retry: The retry policy (default :class:`Retry`: 3 attempts, full jitter).
        breaker: ``True``: the registry's breaker of this name with default settings;
            ``False``: none; or a :class:`CircuitBreaker` built with your settings.
        bulkhead: A :class:`Bulkhead`, or a number of concurrent calls (no queue).
        deadline: Seconds this call may take in all, retries included (narrows the
            request deadline, never widens it).
        budget: ``True``: share the registry's retry budget of this name; ``False``:
            none; or your own :class:`RetryBudget`.
        registry: Where named objects live (default: the process-wide registry).

    Raises:
        ConfigurationError: A ``HARDENKIT_RESILIENT_<NAME>_*`` variable is invalid, or
            sets a breaker option for a breaker built in code.
    """
    registry = registry or default_registry
    overrides = resilient_overrides(name)
    if attempts is not None and retry is not None:
        raise ValueError("give attempts= or retry=, not both")
    policy = retry or Retry(attempts=attempts if attempts is not None else 3)
    timeout = overrides.get("timeout", timeout)
    deadline = overrides.get("deadline", deadline)
    retry_changes = {
        key: overrides[key]
        for key in ("attempts", "max_total", "max_retry_after")
        if key in overrides
    }
    if retry_changes:
        policy = replace(policy, **retry_changes)

    chosen_budget: RetryBudget | None = None
    if isinstance(budget, RetryBudget):
        chosen_budget = budget
    elif budget:
        chosen_budget = policy.budget or registry.budget(name, RetryBudget)

    chosen_breaker = _breaker_for(name, breaker, overrides, registry)
    chosen_bulkhead = _bulkhead_for(name, bulkhead, overrides, registry)
    return Resilient(
        name,
        retry=policy,
        breaker=chosen_breaker,
        timeout=timeout,
        bulkhead=chosen_bulkhead,
        deadline=deadline,
        budget=chosen_budget,
    )


def _breaker_for(
    name: str,
    breaker: CircuitBreaker | bool,
    overrides: dict[str, Any],
    registry: ResilienceRegistry,
) -> CircuitBreaker | None:
    options = {key: overrides[key] for key in _BREAKER_KEYS if key in overrides}
    chosen: CircuitBreaker | None
    if isinstance(breaker, CircuitBreaker):
        if options:
            raise ConfigurationError(
                f"{_variable(name, next(iter(options)))}: the breaker {breaker.name!r} is "
                "built in code; set this option there"
            )
        known = registry.breakers().get(breaker.name)
        chosen = known if known is not None else registry.add_breaker(breaker)
        if chosen is not breaker:
            raise ValueError(f"another breaker named {breaker.name!r} is already registered")
    elif breaker:
        try:
            chosen = registry.breaker(name, lambda: CircuitBreaker(name, **options))
        except ValueError as error:
            raise ConfigurationError(f"HARDENKIT_RESILIENT_{_env(name)}_*: {error}") from None
    else:
        chosen = None
    operator_state = overrides.get("breaker")
    if operator_state is not None:
        if chosen is None:
            raise ConfigurationError(f"{_variable(name, 'breaker')}: {name!r} has no breaker")
        if operator_state == "forced_open":
            chosen.force_open()
        elif operator_state == "disabled":
            chosen.disable()
    return chosen


def _bulkhead_for(
    name: str,
    bulkhead: Bulkhead | int | None,
    overrides: dict[str, Any],
    registry: ResilienceRegistry,
) -> Bulkhead | None:
    limit = overrides.get("max_concurrent")
    if isinstance(bulkhead, Bulkhead):
        if limit is not None:
            raise ConfigurationError(
                f"{_variable(name, 'max_concurrent')}: the bulkhead is built in code; "
                "set the limit there"
            )
        return bulkhead
    if limit is None:
        limit = bulkhead
    if limit is None:
        return None
    max_concurrent = int(limit)
    return registry.bulkhead(name, lambda: Bulkhead(name, max_concurrent=max_concurrent))


def _env(name: str) -> str:
    from hardenkit._settings.resilience import env_name_part  # noqa: PLC0415

    return env_name_part(name)


def _variable(name: str, key: str) -> str:
    return f"HARDENKIT_RESILIENT_{_env(name)}_{key.upper()}"
