"""What ``install()`` adds for outbound resilience: readiness and shared breaker state."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from hardenkit._parts import ReadinessCheck
from hardenkit.health import CheckResult, HealthStatus
from hardenkit.resilience._config import CONFIG
from hardenkit.resilience.registry import ResilienceRegistry, default_registry
from hardenkit.resilience.shared import RedisBreakerStore

if TYPE_CHECKING:
    from hardenkit._parts import Shared
    from hardenkit.settings import HardenSettings

__all__ = ["ResiliencePart", "breaker_readiness", "build_resilience"]


@dataclass(frozen=True, slots=True)
class ResiliencePart:
    """The breakers' readiness check (non-critical) and the registry it reports."""

    registry: ResilienceRegistry
    checks: tuple[ReadinessCheck, ...] = ()


def breaker_readiness(registry: ResilienceRegistry) -> CheckResult:
    """Degraded while any breaker refuses or rations calls; each breaker's state listed."""
    report = registry.report()
    refusing = [
        name
        for name, figures in report.items()
        if figures["state"] != "closed" and figures["state"] != "disabled"
    ]
    status = HealthStatus.DEGRADED if refusing else HealthStatus.HEALTHY
    return CheckResult(status, {"breakers": report})


def build_resilience(
    settings: HardenSettings, shared: Shared, registry: ResilienceRegistry | None = None
) -> ResiliencePart:
    """List the breakers in ``/readyz`` (non-critical) and share them through Redis if set.

    An open breaker makes readiness ``degraded``, never ``unhealthy``: one provider's
    outage must not take every instance out of rotation. The ``HARDENKIT_RESILIENT_*``
    overrides the settings parsed become the ones every ``resilient()`` uses.
    """
    registry = registry or default_registry
    CONFIG.overrides = settings.resilient_overrides

    async def breakers() -> CheckResult:
        return breaker_readiness(registry)

    if settings.outbound_shared_breakers and shared.redis is not None:
        registry.share_through(
            RedisBreakerStore(
                shared.redis, guard=shared.guard, prefix=settings.outbound_breaker_key_prefix
            )
        )
    return ResiliencePart(
        registry=registry, checks=(ReadinessCheck("breakers", breakers, critical=False),)
    )
