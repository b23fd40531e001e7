"""Outbound resilience settings (issue: circuit breakers, retry, timeouts, deadlines)."""

from __future__ import annotations

from hardenkit._settings._base import Section


class ResilienceSettings(Section):
    """Defaults for outbound calls; per-name overrides use ``HARDENKIT_RESILIENT_<NAME>_*``."""

    @classmethod
    def dynamic_env_prefixes(cls) -> tuple[str, ...]:
        """Per-name overrides of ``resilient(name)`` policies."""
        return ("HARDENKIT_RESILIENT_", *super().dynamic_env_prefixes())
