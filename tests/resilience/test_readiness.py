"""/readyz lists the breakers; an open one degrades readiness but never fails it."""

from __future__ import annotations

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from hardenkit.health import HealthRegistry, HealthStatus
from hardenkit.resilience import CircuitBreaker, ResilienceRegistry
from hardenkit.resilience._install import breaker_readiness
from hardenkit.settings import HardenSettings


async def test_an_open_breaker_makes_readiness_degraded_not_unhealthy(
    registry: ResilienceRegistry,
) -> None:
    breaker = registry.add_breaker(CircuitBreaker("openai"))
    registry.add_breaker(CircuitBreaker("search"))
    health = HealthRegistry()

    async def check():  # type: ignore[no-untyped-def]
        return breaker_readiness(registry)

    health.add("breakers", check, critical=False)
    assert (await health.run())[0] is HealthStatus.HEALTHY
    breaker.force_open()
    status, report = await health.run()
    assert status is HealthStatus.DEGRADED
    assert report["breakers"]["breakers"]["openai"]["state"] == "forced_open"
    assert report["breakers"]["breakers"]["search"]["state"] == "closed"


def test_install_lists_the_breakers_in_readyz(monkeypatch: pytest.MonkeyPatch) -> None:
    from hardenkit import install
    from hardenkit.resilience import default_registry

    name = "readiness-test-breaker"
    default_registry.breaker(name, lambda: CircuitBreaker(name))
    app = Starlette()
    install(app, HardenSettings())
    with TestClient(app) as client:
        body = client.get("/readyz").json()
    assert body["checks"]["breakers"]["breakers"][name]["state"] == "closed"
