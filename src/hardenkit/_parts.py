"""What a feature's builder is given and what it hands back to :func:`hardenkit.install`.

Each feature builds its own layers, routes and readiness checks from the settings and the
pieces every feature shares (:class:`Shared`), and returns them in a frozen value of its
own; ``install()`` lays the layers in the fixed order, adds the routes and checks, and
builds :class:`hardenkit.install.Hardened` once. No builder reads or writes another's
result, so none can run "too early".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.cluster import RedisCluster

    from hardenkit.health import HealthCheck
    from hardenkit.instances import InstanceRegistry
    from hardenkit.stores import RedisGuard

__all__ = ["ReadinessCheck", "Shared"]


@dataclass(frozen=True, slots=True)
class Shared:
    """The pieces every Redis-backed feature of one app shares, built once by ``install()``.

    Attributes:
        redis: The asyncio Redis client, or ``None`` when memory-only.
        guard: The one switch between Redis and the memory fallback (``None`` when
            memory-only): every Redis-backed store goes through it.
        instances: The live-instance count the rate-limit fallback shares its budget by
            (``None`` when memory-only).
    """

    redis: Redis | RedisCluster | None = None
    guard: RedisGuard | None = None
    instances: InstanceRegistry | None = None


@dataclass(frozen=True, slots=True)
class ReadinessCheck:
    """A check a feature wants in ``/readyz``; ``install()`` registers it under ``name``."""

    name: str
    check: HealthCheck
    critical: bool = True
