"""The resilience layer's process-wide switches, in one object (as stamina's ``CONFIG``).

* ``testing`` / ``waits``: retry waits are recorded instead of slept
  (:mod:`hardenkit.resilience.testing` turns them on and off).
* ``registry``: where ``resilient(name)`` finds the breaker, bulkhead and budget of a
  name unless given another (:data:`~hardenkit.resilience.registry.default_registry`).
* ``overrides``: the operator's ``HARDENKIT_RESILIENT_<NAME>_*`` values. ``install()``
  sets the ones its settings parsed; without it, the environment is parsed on first use
  and kept, so ``resilient()`` never reads ``os.environ`` per call.
"""

from __future__ import annotations

from hardenkit.resilience import _overrides
from hardenkit.resilience._overrides import ResilientOverrides
from hardenkit.resilience.registry import ResilienceRegistry, default_registry

__all__ = ["CONFIG", "ResilienceConfig"]


class ResilienceConfig:
    """Every process-wide switch of ``resilient()``; there is one, :data:`CONFIG`."""

    __slots__ = ("_overrides", "registry", "testing", "waits")

    def __init__(self, registry: ResilienceRegistry) -> None:
        self.testing = False
        self.waits: list[float] | None = None
        self.registry = registry
        self._overrides: ResilientOverrides | None = None

    @property
    def overrides(self) -> ResilientOverrides:
        """The per-name overrides in force: the ones set, else the environment's, parsed once."""
        if self._overrides is None:
            self._overrides = _overrides.read_resilient_overrides()
        return self._overrides

    @overrides.setter
    def overrides(self, overrides: ResilientOverrides | None) -> None:
        # None forgets them: the next resilient() parses the environment again.
        self._overrides = overrides


CONFIG = ResilienceConfig(default_registry)
