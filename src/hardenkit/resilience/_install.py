"""What ``install()`` adds for outbound resilience: readiness and shared breaker state."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hardenkit.health import CheckResult, HealthStatus
from hardenkit.resilience.registry import ResilienceRegistry, default_registry
from hardenkit.resilience.shared import RedisBreakerStore

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from hardenkit.install import Hardened

__all__ = ["breaker_readiness", "install_resilience"]


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


def install_resilience(
    app: Starlette, kit: Hardened, registry: ResilienceRegistry | None = None
) -> None:
    """List the breakers in ``/readyz`` (non-critical) and share them through Redis if set.

    An open breaker makes readiness ``degraded``, never ``unhealthy``: one provider's
    outage must not take every instance out of rotation.
    """
    registry = registry or default_registry

    async def breakers() -> CheckResult:
        return breaker_readiness(registry)

    kit.health.add("breakers", breakers, critical=False)
    settings = kit.settings
    if settings.outbound_shared_breakers and kit.redis is not None:
        registry.share_through(
            RedisBreakerStore(
                kit.redis, guard=kit.redis_guard, prefix=settings.outbound_breaker_key_prefix
            )
        )
