"""The outbound resilience section: circuit breakers, retry, timeouts, deadlines.

Besides the fields below, ``HARDENKIT_RESILIENT_<NAME>_<KEY>`` overrides the policy that
``resilient("<name>")`` builds, per dependency name, so an operator can tune one provider
without a release (``HARDENKIT_RESILIENT_OPENAI_TIMEOUT=20``; the parser is
:mod:`hardenkit.resilience._overrides`). A variable that does not parse refuses startup
in every environment, naming the variable and never echoing its value.
"""

from __future__ import annotations

from pydantic import Field, PrivateAttr

from hardenkit._section import Section, SettingProblem
from hardenkit.resilience._overrides import (
    RESILIENT_PREFIX,
    ResilientOverrides,
    read_resilient_overrides,
)

__all__ = ["ResilienceSettings"]


class ResilienceSettings(Section):
    """Defaults for outbound calls; per-name overrides use ``HARDENKIT_RESILIENT_<NAME>_*``."""

    # Parsed from the environment on first use, once per settings object: the problems
    # and the values install() hands to resilient() come from the same parse.
    _resilient_overrides: ResilientOverrides | None = PrivateAttr(default=None)

    outbound_shared_breakers: bool = Field(
        default=False,
        description=(
            "Share circuit breaker state across processes through Redis "
            "(two round trips per async call; needs `HARDENKIT_REDIS_URL`)."
        ),
    )
    outbound_breaker_key_prefix: str = Field(
        default="hardenkit:breaker:",
        min_length=1,
        description="Prefix of the Redis keys holding shared breaker state.",
    )

    @property
    def resilient_overrides(self) -> ResilientOverrides:
        """The ``HARDENKIT_RESILIENT_<NAME>_*`` overrides, parsed once per settings object."""
        if self._resilient_overrides is None:
            self._resilient_overrides = read_resilient_overrides()
        return self._resilient_overrides

    @classmethod
    def dynamic_env_prefixes(cls) -> tuple[str, ...]:
        """Per-name overrides of ``resilient(name)`` policies."""
        return (RESILIENT_PREFIX, *super().dynamic_env_prefixes())

    def collect_problems(self) -> list[SettingProblem]:
        """Report invalid per-name overrides (in every environment)."""
        problems = super().collect_problems()
        problems.extend(self.resilient_overrides.problems)
        if self.outbound_shared_breakers and getattr(self, "redis_url", None) is None:
            problems.append(
                SettingProblem(
                    "HARDENKIT_OUTBOUND_SHARED_BREAKERS",
                    "breakers can only be shared through Redis; set HARDENKIT_REDIS_URL",
                    severity="warning",
                    production_only=False,
                )
            )
        return problems
