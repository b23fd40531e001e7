"""The :class:`Resilient` policy: deadline → retry → circuit breaker → timeout → bulkhead → call.

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
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast, overload

from hardenkit import _timer
from hardenkit.context import deadline_var, remaining_time, set_deadline
from hardenkit.resilience import testing
from hardenkit.resilience._retrying import RetryRun
from hardenkit.resilience.errors import AttemptTimeoutError, DeadlineExceededError
from hardenkit.telemetry import timeouts

if TYPE_CHECKING:
    from hardenkit.resilience.breaker import CircuitBreaker
    from hardenkit.resilience.budget import RetryBudget
    from hardenkit.resilience.bulkhead import Bulkhead
    from hardenkit.resilience.retry import Retry

__all__ = ["Resilient"]

P = ParamSpec("P")
R = TypeVar("R")

_MISSING: Any = object()


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

    # A coroutine function stays one (``asyncio.create_task(fetch())`` type-checks); any
    # other callable keeps its exact signature. tests/typecheck/ checks both under mypy.
    @overload
    def __call__(
        self, fn: Callable[P, Coroutine[Any, Any, R]]
    ) -> Callable[P, Coroutine[Any, Any, R]]: ...
    @overload
    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]: ...
    def __call__(self, fn: Callable[P, Any]) -> Callable[P, Any]:
        """Decorate a sync or async callable, keeping its signature."""
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
        started = breaker.begin()
        try:
            result = self._bounded(fn, args, kwargs, timeout)
        except BaseException as error:
            breaker.end(started, error)
            raise
        breaker.end(started, None, result)
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
        run = RetryRun(
            self, fn=fn, args=args, kwargs=kwargs, start=start, error=error, result=result
        )
        for wait in run:
            testing.sleep(wait)
            with run.attempt() as attempt:
                attempt.result = self._attempt(fn, args, kwargs)
        return run.outcome

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
        if breaker.store is not None:  # two Redis round trips: a context manager is free
            async with breaker.measure() as call:
                call.result = result = await self._bounded_async(fn, args, kwargs, timeout)
            return result
        started = breaker.begin()
        try:
            result = await self._bounded_async(fn, args, kwargs, timeout)
        except BaseException as error:
            breaker.end(started, error)
            raise
        breaker.end(started, None, result)
        return result

    async def _bounded_async(
        self, fn: Callable[..., Awaitable[R]], args: Any, kwargs: Any, budget: float | None
    ) -> R:
        bulkhead = self.bulkhead
        if budget is None:
            if bulkhead is None:
                return await fn(*args, **kwargs)
            return await self._bulkheaded_async(bulkhead, fn, args, kwargs)
        token = set_deadline(budget)
        # The watchdog cancels the attempt in the current task: no task is created, so
        # none can be left behind (see _timer.py for why not asyncio.timeout).
        attempt = _timer.watch(budget)
        try:
            if bulkhead is None:
                return await fn(*args, **kwargs)
            return await self._bulkheaded_async(bulkhead, fn, args, kwargs)
        except asyncio.CancelledError:
            if attempt.timed_out():
                timeouts.add(1, {"kind": "outbound"})
                raise AttemptTimeoutError(self.name, budget) from None
            raise
        finally:
            attempt.done()
            deadline_var.reset(token)

    @staticmethod
    async def _bulkheaded_async(
        bulkhead: Bulkhead, fn: Callable[..., Awaitable[R]], args: Any, kwargs: Any
    ) -> R:
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
        run = RetryRun(
            self, fn=fn, args=args, kwargs=kwargs, start=start, error=error, result=result
        )
        for wait in run:
            await testing.sleep_async(wait)
            with run.attempt() as attempt:
                attempt.result = await self._attempt_async(fn, args, kwargs)
        return run.outcome
