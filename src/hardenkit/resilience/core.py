"""``resilient(name)``: the :class:`Resilient` policy of a name, from its registry and overrides.

The policy itself (the fixed order deadline → retry → circuit breaker → timeout →
bulkhead → call, and why) is :mod:`hardenkit.resilience._policy`; this module picks the
named objects it runs with: the registry's breaker, bulkhead and retry budget of the
name, with the operator's ``HARDENKIT_RESILIENT_<NAME>_*`` overrides applied.
"""

from __future__ import annotations

from dataclasses import replace

from hardenkit.resilience._config import CONFIG
from hardenkit.resilience._named import breaker_for, bulkhead_for
from hardenkit.resilience._policy import Resilient
from hardenkit.resilience.breaker import CircuitBreaker
from hardenkit.resilience.budget import RetryBudget
from hardenkit.resilience.bulkhead import Bulkhead
from hardenkit.resilience.registry import ResilienceRegistry
from hardenkit.resilience.retry import Retry

__all__ = ["Resilient", "resilient"]


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
    registry = registry or CONFIG.registry
    overrides = CONFIG.overrides.of(name)
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

    chosen_breaker = breaker_for(name, breaker, overrides, registry)
    chosen_bulkhead = bulkhead_for(name, bulkhead, overrides, registry)
    return Resilient(
        name,
        retry=policy,
        breaker=chosen_breaker,
        timeout=timeout,
        bulkhead=chosen_bulkhead,
        deadline=deadline,
        budget=chosen_budget,
    )
