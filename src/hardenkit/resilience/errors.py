"""Errors raised by the outbound resilience pieces.

:class:`CircuitOpenError` and :class:`BulkheadFullError` are :class:`~hardenkit.HardenError`
subclasses: left unhandled inside a request they become a 503 problem response with a
``Retry-After`` header, and their client-facing detail never names the dependency.
"""

from __future__ import annotations

from hardenkit.errors import ErrorCode, HardenError, retry_after_seconds

__all__ = [
    "AttemptTimeoutError",
    "BulkheadFullError",
    "CircuitOpenError",
    "DeadlineExceededError",
]


class CircuitOpenError(HardenError):
    """The circuit breaker refused the call without trying it.

    Attributes:
        breaker_name: The breaker that refused (for logs; never sent to the client).
        remaining_wait: Seconds until the breaker lets a trial call through, or ``None``
            when an operator forced it open.
    """

    def __init__(self, breaker_name: str, remaining_wait: float | None) -> None:
        self.breaker_name = breaker_name
        self.remaining_wait = remaining_wait
        # Forced open: nothing says when it closes; ask for the shortest wait.
        retry_after = retry_after_seconds(0 if remaining_wait is None else remaining_wait)
        super().__init__(
            ErrorCode.UPSTREAM_UNAVAILABLE,
            status=503,
            detail="A service this request depends on is unavailable; try again later.",
            headers={"Retry-After": str(retry_after)},
        )
        # The log-facing message names the breaker; the problem body does not.
        self.args = (f"circuit {breaker_name!r} is open",)

    @property
    def retry_after(self) -> float | None:
        """Seconds a caller should wait before trying again (alias of ``remaining_wait``)."""
        return self.remaining_wait


class BulkheadFullError(HardenError):
    """The bulkhead had no free slot and its wait queue was full or the wait ran out.

    Attributes:
        bulkhead_name: The bulkhead that refused.
    """

    def __init__(self, bulkhead_name: str) -> None:
        self.bulkhead_name = bulkhead_name
        super().__init__(
            ErrorCode.SERVICE_UNAVAILABLE,
            status=503,
            detail="The service is busy; try again shortly.",
            headers={"Retry-After": str(retry_after_seconds(0))},
        )
        self.args = (f"bulkhead {bulkhead_name!r} is full",)


class AttemptTimeoutError(TimeoutError):
    """One attempt ran longer than its timeout and was cancelled (async) or abandoned.

    Left unhandled inside a request it becomes a 504 ``UPSTREAM_TIMEOUT`` problem.
    """

    hardenkit_outbound = "timeout"

    def __init__(self, name: str, timeout: float) -> None:
        self.name = name
        self.timeout = timeout
        super().__init__(f"attempt of {name!r} timed out after {timeout:.3f}s")


class DeadlineExceededError(TimeoutError):
    """No time was left before the deadline to start (another) attempt.

    Left unhandled inside a request it becomes a 504 ``REQUEST_TIMEOUT`` problem.
    """

    hardenkit_outbound = "deadline"

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"deadline exceeded before an attempt of {name!r} could start")
