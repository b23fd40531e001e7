"""Is this tenant still allowed in? A pluggable answer, cached so it is rarely asked.

:class:`TenantResolver` is what an application implements (a database lookup, a call to
an account service). :class:`TenantStatusCache` asks it at most once per tenant per TTL:
answers live in Redis, shared by every instance, with the process memory as the fallback
the :class:`~hardenkit.stores.RedisGuard` switches to while Redis is unavailable (the same
rules as every Redis-backed store). While it does, an answer cached by another instance is
not known here, so the resolver is asked again; a suspension made with
:meth:`~TenantStatusCache.invalidate` during the outage reaches this instance only when its
own cached answer expires (``ttl``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from hardenkit._ttlmap import TTLMap
from hardenkit.stores import RedisGuard, nothing, store_key

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.cluster import RedisCluster

__all__ = ["TenantResolver", "TenantStatusCache"]


@runtime_checkable
class TenantResolver(Protocol):
    """Answers whether a tenant may use the service (not suspended, not deleted)."""

    async def is_active(self, tenant_id: str) -> bool:
        """Return whether ``tenant_id`` is active. Raise if you cannot tell."""
        ...  # pragma: no cover


class TenantStatusCache:
    """Caches a :class:`TenantResolver`'s answers with a TTL.

    Without a resolver every tenant is active (nothing to ask). With one, an inactive
    tenant is refused and the answer is reused for ``ttl`` seconds, across instances when
    Redis is configured. Call :meth:`invalidate` when you suspend a tenant to make every
    instance ask again at once.

    Args:
        resolver: The application's resolver, or ``None`` (set later with :meth:`use`).
        ttl: Seconds an answer is reused.
        redis: Shared Redis client, or ``None`` for memory only.
        guard: The app's :class:`~hardenkit.stores.RedisGuard`; with ``redis`` and no
            guard, the cache makes its own (:meth:`RedisGuard.for_client`).
        key_prefix: Prefix of the Redis keys (``<prefix>{<tenant>}``).
        max_entries: Most answers kept in memory.
        clock: Monotonic clock for the memory entries.
    """

    def __init__(
        self,
        resolver: TenantResolver | None = None,
        *,
        ttl: float = 60.0,
        redis: Redis | RedisCluster | None = None,
        guard: RedisGuard | None = None,
        key_prefix: str = "hardenkit:tenant-active:",
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl <= 0 or max_entries <= 0:
            raise ValueError("ttl and max_entries must be positive")
        guard = RedisGuard.of_store("tenants", redis, guard)
        self._resolver = resolver
        self.ttl = ttl
        self._redis = redis
        self._guard = guard
        self.key_prefix = key_prefix
        self.max_entries = max_entries
        self._memory: TTLMap[str, bool] = TTLMap(max_entries, clock)

    @property
    def resolver(self) -> TenantResolver | None:
        """The resolver asked on a cache miss."""
        return self._resolver

    def use(self, resolver: TenantResolver | None) -> None:
        """Replace the resolver (and forget cached answers)."""
        if resolver is not None and not isinstance(resolver, TenantResolver):
            raise TypeError("a TenantResolver needs an async is_active(tenant_id) method")
        self._resolver = resolver
        self._memory.clear()

    async def is_active(self, tenant_id: str) -> bool:
        """Return whether ``tenant_id`` is active, asking the resolver on a miss.

        Raises:
            Exception: Whatever the resolver raised; the caller fails closed.
        """
        resolver = self._resolver
        if resolver is None:
            return True
        cached = await self._cached(tenant_id)
        if cached is not None:
            return cached
        active = bool(await resolver.is_active(tenant_id))
        await self._store(tenant_id, active)
        return active

    async def invalidate(self, tenant_id: str) -> None:
        """Forget the cached answer for ``tenant_id`` here and in Redis."""
        self._memory.pop(tenant_id)
        if self._redis is not None and self._guard is not None:
            redis = self._redis

            async def delete() -> None:
                await redis.delete(store_key(self.key_prefix, tenant_id))

            await self._guard.call(delete, nothing)

    async def _cached(self, tenant_id: str) -> bool | None:
        redis, guard = self._redis, self._guard
        if redis is None or guard is None:
            return self._memory.get(tenant_id)

        async def from_redis() -> bool | None:
            value = await redis.get(store_key(self.key_prefix, tenant_id))
            if value is None:
                return None
            return value in (b"1", "1")

        async def from_memory() -> bool | None:
            return self._memory.get(tenant_id)

        return await guard.call(from_redis, from_memory)

    async def _store(self, tenant_id: str, active: bool) -> None:
        redis, guard = self._redis, self._guard
        if redis is None or guard is None:
            self._memory.put(tenant_id, active, self.ttl)
            return

        async def to_redis() -> None:
            key = store_key(self.key_prefix, tenant_id)
            await redis.set(key, b"1" if active else b"0", ex=math.ceil(self.ttl))

        async def to_memory() -> None:
            self._memory.put(tenant_id, active, self.ttl)

        await guard.call(to_redis, to_memory)
