"""Liveness (``/healthz``) and readiness (``/readyz``) with pluggable checks.

Liveness is 200 while the process serves. Readiness runs every registered check at once,
each bounded by a timeout, and answers ``healthy`` (200), ``degraded`` (200: serving, on a
fallback) or ``unhealthy`` (503). A check that raises or times out counts as unhealthy,
or as degraded when it was registered as non-critical; its exception stays in the logs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import structlog
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

__all__ = ["CheckResult", "HealthCheck", "HealthRegistry", "HealthStatus"]

_logger = structlog.get_logger("hardenkit.health")


class HealthStatus(StrEnum):
    """Readiness of the service or of one dependency."""

    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"


_RANK = {HealthStatus.HEALTHY: 0, HealthStatus.DEGRADED: 1, HealthStatus.UNHEALTHY: 2}


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The outcome of one readiness check; ``detail`` is shown in ``/readyz``."""

    status: HealthStatus
    detail: Mapping[str, Any] = field(default_factory=dict)


HealthCheck = Callable[[], Awaitable[CheckResult]]
"""An async callable that reports one dependency's readiness."""


@dataclass(slots=True)
class _Entry:
    check: HealthCheck
    critical: bool


class HealthRegistry:
    """The readiness checks of one application.

    Args:
        timeout: Seconds each check may take.
    """

    def __init__(self, *, timeout: float = 1.0) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.timeout = timeout
        self._checks: dict[str, _Entry] = {}

    def add(self, name: str, check: HealthCheck, *, critical: bool = True) -> None:
        """Register ``check`` under ``name``.

        A non-critical check can make readiness degraded but never unhealthy (an open
        circuit breaker to one provider should not take the instance out of rotation).
        """
        if name in self._checks:
            raise ValueError(f"a readiness check named {name!r} is already registered")
        self._checks[name] = _Entry(check, critical)

    def names(self) -> list[str]:
        """Return the registered check names."""
        return list(self._checks)

    async def run(self) -> tuple[HealthStatus, dict[str, dict[str, Any]]]:
        """Run every check concurrently; return the overall status and each result."""
        names = list(self._checks)
        results = await asyncio.gather(*(self._run_one(name) for name in names))
        overall = HealthStatus.HEALTHY
        report: dict[str, dict[str, Any]] = {}
        for name, result in zip(names, results, strict=True):
            status = result.status
            if status is HealthStatus.UNHEALTHY and not self._checks[name].critical:
                status = HealthStatus.DEGRADED
            if _RANK[status] > _RANK[overall]:
                overall = status
            report[name] = {"status": result.status.value, **result.detail}
        return overall, report

    async def _run_one(self, name: str) -> CheckResult:
        try:
            async with asyncio.timeout(self.timeout):
                return await self._checks[name].check()
        except TimeoutError:
            _logger.warning("readiness_check_timeout", check=name, timeout=self.timeout)
            return CheckResult(HealthStatus.UNHEALTHY, {"error": "timeout"})
        except Exception:
            _logger.exception("readiness_check_failed", check=name)
            return CheckResult(HealthStatus.UNHEALTHY, {"error": "check failed"})

    async def liveness(self, request: Request) -> Response:
        """Starlette endpoint for ``/healthz``."""
        return JSONResponse({"status": "ok"}, headers={"cache-control": "no-store"})

    async def readiness(self, request: Request) -> Response:
        """Starlette endpoint for ``/readyz``."""
        overall, report = await self.run()
        status_code = 503 if overall is HealthStatus.UNHEALTHY else 200
        return JSONResponse(
            {"status": overall.value, "checks": report},
            status_code=status_code,
            headers={"cache-control": "no-store"},
        )
