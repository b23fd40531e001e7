"""Named breakers, bulkheads and retry budgets, one of each per dependency name.

``resilient("openai")`` in two modules must mean the same breaker, or a provider outage
would be measured twice as gently. The registry hands out one object per name and lists
them for ``/readyz``. Most applications use the process-wide :data:`default_registry`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from hardenkit.resilience.events import BreakerState, StateListener

if TYPE_CHECKING:
    from hardenkit.resilience.breaker import CircuitBreaker
    from hardenkit.resilience.budget import RetryBudget
    from hardenkit.resilience.bulkhead import Bulkhead
    from hardenkit.resilience.shared import RedisBreakerStore

__all__ = ["ResilienceRegistry", "default_registry"]

T = TypeVar("T")

_NOT_READY = (BreakerState.OPEN, BreakerState.HALF_OPEN, BreakerState.FORCED_OPEN)


class ResilienceRegistry:
    """One breaker, bulkhead and retry budget per name.

    Attributes:
        listeners: Callbacks told about every state change of every breaker created
            here from now on (add yours before the breakers are created).
        store: The shared store given to breakers created here (set by
            :meth:`share_through`).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._breakers: dict[str, CircuitBreaker] = {}
        self._bulkheads: dict[str, Bulkhead] = {}
        self._budgets: dict[str, RetryBudget] = {}
        self.listeners: list[StateListener] = []
        self.store: RedisBreakerStore | None = None

    def breaker(self, name: str, factory: Callable[[], CircuitBreaker]) -> CircuitBreaker:
        """Return the breaker called ``name``, creating it with ``factory`` the first time."""
        return self._get_or_create(self._breakers, name, factory)

    def bulkhead(self, name: str, factory: Callable[[], Bulkhead]) -> Bulkhead:
        """Return the bulkhead called ``name``, creating it with ``factory`` the first time."""
        return self._get_or_create(self._bulkheads, name, factory)

    def budget(self, name: str, factory: Callable[[], RetryBudget]) -> RetryBudget:
        """Return the retry budget called ``name``, creating it the first time."""
        return self._get_or_create(self._budgets, name, factory)

    def add_breaker(self, breaker: CircuitBreaker) -> CircuitBreaker:
        """Register a breaker built elsewhere; its name must be free."""
        with self._lock:
            if breaker.name in self._breakers:
                raise ValueError(f"a breaker named {breaker.name!r} is already registered")
            self._adopt(breaker)
            self._breakers[breaker.name] = breaker
        return breaker

    def breakers(self) -> dict[str, CircuitBreaker]:
        """Every breaker, by name."""
        with self._lock:
            return dict(self._breakers)

    def share_through(self, store: RedisBreakerStore | None) -> None:
        """Share every breaker's state (existing and future) through ``store``."""
        with self._lock:
            self.store = store
            for breaker in self._breakers.values():
                breaker.store = store

    def not_ready(self) -> list[str]:
        """Names of the breakers that currently refuse or ration calls."""
        return [name for name, breaker in self.breakers().items() if breaker.state in _NOT_READY]

    def report(self) -> dict[str, dict[str, Any]]:
        """Each breaker's snapshot, for readiness."""
        return {name: breaker.snapshot() for name, breaker in sorted(self.breakers().items())}

    def reset(self) -> None:
        """Close every breaker and empty every retry budget, keeping the objects.

        Unlike :meth:`clear`, functions already decorated keep sharing them.
        """
        for breaker in self.breakers().values():
            breaker.reset()
        with self._lock:
            budgets = list(self._budgets.values())
        for budget in budgets:
            budget.reset()

    def clear(self) -> None:
        """Forget every object (tests)."""
        with self._lock:
            self._breakers.clear()
            self._bulkheads.clear()
            self._budgets.clear()

    def _adopt(self, breaker: CircuitBreaker) -> None:
        if breaker.store is None:
            breaker.store = self.store
        breaker.listeners.extend(self.listeners)

    def _get_or_create(self, table: dict[str, Any], name: str, factory: Callable[[], T]) -> T:
        existing = table.get(name)
        if existing is not None:
            return existing  # type: ignore[no-any-return]
        with self._lock:
            existing = table.get(name)
            if existing is None:
                existing = factory()
                if table is self._breakers:
                    self._adopt(existing)  # type: ignore[arg-type]
                table[name] = existing
            return existing


default_registry = ResilienceRegistry()
"""The process-wide registry ``resilient(name)`` uses unless given another."""
