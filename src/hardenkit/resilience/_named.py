"""The breaker and bulkhead of a name: from the registry, with the operator's overrides.

``HARDENKIT_RESILIENT_<NAME>_*`` may tune the objects ``resilient()`` builds; an object
built in code keeps its own settings, and an override aimed at it is refused by name.
"""

from __future__ import annotations

from typing import Any

from hardenkit.errors import ConfigurationError
from hardenkit.resilience._overrides import env_name_part
from hardenkit.resilience.breaker import CircuitBreaker
from hardenkit.resilience.bulkhead import Bulkhead
from hardenkit.resilience.registry import ResilienceRegistry

__all__ = ["breaker_for", "bulkhead_for"]

_BREAKER_KEYS = (
    "failure_rate_threshold",
    "slow_call_duration",
    "minimum_calls",
    "window_size",
    "wait_in_open",
)


def breaker_for(
    name: str,
    breaker: CircuitBreaker | bool,
    overrides: dict[str, Any],
    registry: ResilienceRegistry,
) -> CircuitBreaker | None:
    """The breaker ``resilient(name, breaker=...)`` uses, operator state applied."""
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


def bulkhead_for(
    name: str,
    bulkhead: Bulkhead | int | None,
    overrides: dict[str, Any],
    registry: ResilienceRegistry,
) -> Bulkhead | None:
    """The bulkhead ``resilient(name, bulkhead=...)`` uses, if any."""
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
    return env_name_part(name)


def _variable(name: str, key: str) -> str:
    return f"HARDENKIT_RESILIENT_{_env(name)}_{key.upper()}"
