"""Outbound resilience: circuit breakers, retry, timeouts, deadlines, bulkheads.

``resilient(name)`` composes them in one fixed order for sync and async callables;
``ResilientTransport`` applies the same policy to every request of an httpx client
(import it from :mod:`hardenkit.resilience.httpx`, or :mod:`hardenkit.resilience.httpx2`
for an httpx2 client such as the OpenAI SDK's; both are optional extras).
"""

from hardenkit.resilience.breaker import BreakerConfig, CircuitBreaker
from hardenkit.resilience.budget import RetryBudget
from hardenkit.resilience.bulkhead import Bulkhead
from hardenkit.resilience.core import Resilient, resilient
from hardenkit.resilience.deadline import deadline
from hardenkit.resilience.errors import (
    AttemptTimeoutError,
    BulkheadFullError,
    CircuitOpenError,
    DeadlineExceededError,
)
from hardenkit.resilience.events import BreakerState, StateChange
from hardenkit.resilience.registry import ResilienceRegistry, default_registry
from hardenkit.resilience.retry import (
    Retry,
    is_retryable_response,
    is_transient_error,
    parse_retry_after,
)
from hardenkit.resilience.shared import RedisBreakerStore

__all__ = [
    "AttemptTimeoutError",
    "BreakerConfig",
    "BreakerState",
    "Bulkhead",
    "BulkheadFullError",
    "CircuitBreaker",
    "CircuitOpenError",
    "DeadlineExceededError",
    "RedisBreakerStore",
    "ResilienceRegistry",
    "Resilient",
    "Retry",
    "RetryBudget",
    "StateChange",
    "deadline",
    "default_registry",
    "is_retryable_response",
    "is_transient_error",
    "parse_retry_after",
    "resilient",
]
