"""The resilience layer's process-wide switches, in one object (as stamina's ``CONFIG``).

* ``testing`` / ``waits``: retry waits are recorded instead of slept
  (:mod:`hardenkit.resilience.testing` turns them on and off).
* ``registry``: where ``resilient(name)`` finds the breaker, bulkhead and budget of a
  name unless given another (:data:`~hardenkit.resilience.registry.default_registry`).
* ``overrides``: the operator's ``HARDENKIT_RESILIENT_<NAME>_*`` values for a name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hardenkit._settings.resilience import resilient_overrides
from hardenkit.resilience.registry import ResilienceRegistry, default_registry

__all__ = ["CONFIG", "ResilienceConfig"]


class ResilienceConfig:
    """Every process-wide switch of ``resilient()``; there is one, :data:`CONFIG`."""

    __slots__ = ("overrides", "registry", "testing", "waits")

    def __init__(
        self,
        registry: ResilienceRegistry,
        overrides: Callable[[str], dict[str, Any]],
    ) -> None:
        self.testing = False
        self.waits: list[float] | None = None
        self.registry = registry
        self.overrides = overrides


CONFIG = ResilienceConfig(default_registry, resilient_overrides)
