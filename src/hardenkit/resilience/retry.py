"""The retry policy, on tenacity's strategies, and what counts as transient.

:class:`Retry` is a frozen policy. Its ``wait``, ``retry_on`` and ``stop`` fields take
tenacity strategies as they are (``wait_exponential() + wait_random(0, 1)``,
``retry_if_exception_type(...)``, ``stop_after_delay(5)``), so nothing here invents a
parallel vocabulary. hardenkit adds what tenacity leaves to the caller: ``Retry-After``,
a cap on the total time, the retry budget and the request deadline (see
:mod:`hardenkit.resilience._retrying`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from tenacity import retry_if_exception, retry_if_result, wait_random_exponential
from tenacity.retry import retry_base
from tenacity.stop import stop_base
from tenacity.wait import wait_base

from hardenkit.errors import http_clients
from hardenkit.resilience._policy import Resilient
from hardenkit.resilience._retry_after import parse_retry_after, retry_after_of
from hardenkit.resilience.errors import (
    BulkheadFullError,
    CircuitOpenError,
    DeadlineExceededError,
)

if TYPE_CHECKING:
    from hardenkit.resilience.budget import RetryBudget

__all__ = [
    "IDEMPOTENT_METHODS",
    "RETRYABLE_STATUSES",
    "Retry",
    "is_retryable_response",
    "is_transient_error",
    "parse_retry_after",
    "retry_after_of",
]

P = ParamSpec("P")
R = TypeVar("R")

RETRYABLE_STATUSES = frozenset({408, 429, 502, 503, 504})
"""HTTP statuses worth another attempt: the request did not happen or may succeed later."""

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
"""HTTP methods that may be repeated without a second effect (RFC 9110, section 9.2.2)."""

_NEVER_RETRIED = (CircuitOpenError, BulkheadFullError, DeadlineExceededError)


def _status_of(value: Any) -> int | None:
    status = getattr(value, "status_code", None)
    return status if type(status) is int else None


def is_transient_error(error: BaseException) -> bool:
    """Whether ``error`` is plausibly transient: worth another attempt.

    Yes for timeouts and connection errors (built-in, and httpx's and httpx2's timeout,
    network and remote-protocol errors) and for errors carrying an HTTP status (``status_code`` or
    ``response.status_code``) of 408, 429, 502, 503 or 504. Never for an open breaker,
    a full bulkhead or a passed deadline, and never for any other 4xx.
    """
    if isinstance(error, _NEVER_RETRIED):
        return False
    if isinstance(error, TimeoutError | ConnectionError):
        return True
    if any(
        isinstance(
            error, client.TimeoutException | client.NetworkError | client.RemoteProtocolError
        )
        for client in http_clients()
    ):
        return True
    status = _status_of(error)
    if status is None:
        status = _status_of(getattr(error, "response", None))
    return status is not None and status in RETRYABLE_STATUSES


def is_retryable_response(result: Any) -> bool:
    """Whether ``result`` is an HTTP response (``status_code``) with a retryable status."""
    status = _status_of(result)
    return status is not None and status in RETRYABLE_STATUSES


_DEFAULT_RETRY_ON = retry_if_exception(is_transient_error) | retry_if_result(is_retryable_response)


@dataclass(frozen=True, slots=True)
class Retry:
    """How to retry: right without tuning, tunable with tenacity's own strategies.

    Args:
        attempts: Attempts in all, the first included (``1``: never retry).
        wait: Backoff between attempts, a tenacity wait strategy. Default: exponential
            with full jitter, ``random(0, min(5, 0.2 × 2^n))`` seconds.
        retry_on: Which outcomes to retry, a tenacity retry strategy. Default: transient
            errors (:func:`is_transient_error`) and responses with status 408, 429, 502,
            503, 504 (:func:`is_retryable_response`).
        stop: An extra tenacity stop strategy, combined with ``attempts``.
        max_total: Seconds from the first attempt after which no retry starts (a retry
            that would end after it, waits included, is not started either).
        max_retry_after: Longest ``Retry-After`` honoured, in seconds. A longer one ends
            the retries at once: retrying before the server asked only earns another 429.
        budget: The retry budget to draw from; ``resilient(name)`` gives each name its own.
    """

    attempts: int = 3
    wait: wait_base = field(default_factory=lambda: wait_random_exponential(0.2, max=5.0))
    retry_on: retry_base = _DEFAULT_RETRY_ON
    stop: stop_base | None = None
    max_total: float = 30.0
    max_retry_after: float = 30.0
    budget: RetryBudget | None = None

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")
        if self.max_total <= 0 or self.max_retry_after < 0:
            raise ValueError("max_total must be positive and max_retry_after non-negative")

    @property
    def result_gate(self) -> Callable[[Any], bool] | None:
        """A cheap test of a successful result, or ``None`` to ask ``retry_on`` itself.

        The default ``retry_on`` only ever retries results that are retryable HTTP
        responses, so the success path checks that directly instead of building
        tenacity's call state.
        """
        return is_retryable_response if self.retry_on is _DEFAULT_RETRY_ON else None

    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]:
        """Decorate ``fn`` with this policy alone (no breaker, no timeout)."""
        name = getattr(fn, "__qualname__", "retry")
        return Resilient(name, retry=self, breaker=None, timeout=None)(fn)
