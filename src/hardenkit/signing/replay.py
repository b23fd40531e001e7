"""Remembering message and event ids: Redis ``SET NX`` with a TTL, memory when Redis is down.

:class:`ReplayStore` answers two questions. ``remember(key, ttl)``: is this the first time
this nonce is seen? (signed messages: a second sighting is a replay). ``claim(key, ...)``:
may this delivery be processed now? (webhooks: a delivery whose id was processed is a
duplicate; one still being processed elsewhere is in progress). A claim is settled with
``complete`` (processed: remember it for ``ttl``) or ``release`` (failed: forget it, so
the sender's retry is processed).

Every operation is one command on one key, so the store works unchanged on Redis Cluster.
Redis is reached through a :class:`~hardenkit.stores.RedisGuard` (the same rules as every
Redis-backed store: slow is not down). While Redis is unavailable, ``when_down`` decides:

* ``fallback``: a bounded in-memory store answers. It is per process: ids seen by other
  instances are not known there, so with several instances a delivery redelivered to
  another one during the outage is processed again. Results obtained from Redis are
  mirrored into memory, so the fallback starts with what this process saw.
* ``closed``: nothing is claimed or remembered; :class:`ReplayStoreUnavailableError` (503 with
  ``Retry-After``) asks the sender to retry, so no delivery is ever processed twice.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import StrEnum
from typing import TYPE_CHECKING, Literal

from hardenkit._ttlmap import TTLMap
from hardenkit.errors import ErrorCode, HardenError, Refusal, retry_after_seconds
from hardenkit.health import CheckResult, HealthStatus
from hardenkit.stores import RedisGuard, nothing

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.cluster import RedisCluster

__all__ = ["ClaimOutcome", "ReplayRedisDown", "ReplayStore", "ReplayStoreUnavailableError"]

ReplayRedisDown = Literal["fallback", "closed"]
"""While Redis is unavailable: remember ids per process (``fallback``) or refuse (``closed``)."""

_SEEN = "1"
_PROCESSING = "p"
_DONE = "d"
DEFAULT_MAX_MEMORY_ENTRIES = 100_000


class ClaimOutcome(StrEnum):
    """What :meth:`ReplayStore.claim` found."""

    NEW = "new"
    """Not seen before: process it, then call ``complete`` or ``release``."""
    DUPLICATE = "duplicate"
    """Already processed: do not process it again."""
    IN_PROGRESS = "in_progress"
    """Claimed by a delivery still being processed: ask the sender to retry later."""


class ReplayStoreUnavailableError(HardenError):
    """Redis is unavailable and the replay store is ``closed``: 503, retry later.

    Nothing was claimed or remembered, so the sender's retry is processed normally.
    """

    def __init__(self, retry_after: float) -> None:
        refusal = Refusal.retry_later(
            503,
            ErrorCode.SERVICE_UNAVAILABLE,
            "Replay protection is unavailable; retry later.",
            wait=retry_after,
        )
        super().__init__(
            refusal.code,
            status=refusal.status,
            detail=refusal.detail,
            headers=dict(refusal.headers),
        )
        self.retry_after_seconds = retry_after_seconds(retry_after)


class ReplayStore:
    """Ids remembered in Redis (``SET NX`` + TTL), with a bounded in-memory fallback.

    Args:
        redis: An asyncio Redis or RedisCluster client; ``None`` keeps ids in memory only
            (one process).
        guard: The :class:`~hardenkit.stores.RedisGuard` to share (``install()`` passes the
            app's); when omitted and ``redis`` is given, the store makes its own
            (:meth:`RedisGuard.of_store`, as every Redis-backed store does).
        prefix: Prepended to every key, so several apps can share one Redis.
        max_memory_entries: Bound of the in-memory store.
        timeout: Seconds a Redis call may take before the fallback answers (own guard only).
        retry_interval: Seconds before Redis is probed again after a failure (own guard only).
        clock: Monotonic clock of the memory store, replaceable in tests.
        when_down: While Redis is unavailable: ``fallback`` (ids in this process's
            memory) or ``closed`` (raise :class:`ReplayStoreUnavailableError`). Ignored
            without ``redis``.

    Raises:
        ValueError: A bound below 1, an unknown ``when_down``, or a guard without
            ``redis``.
    """

    def __init__(
        self,
        redis: Redis | RedisCluster | None = None,
        *,
        guard: RedisGuard | None = None,
        prefix: str = "hardenkit:replay:",
        max_memory_entries: int = DEFAULT_MAX_MEMORY_ENTRIES,
        timeout: float = 0.05,
        retry_interval: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        when_down: ReplayRedisDown = "fallback",
    ) -> None:
        if max_memory_entries <= 0:
            raise ValueError("max_memory_entries must be positive")
        if when_down not in ("fallback", "closed"):
            raise ValueError("when_down must be 'fallback' or 'closed'")
        self.when_down: ReplayRedisDown = when_down
        self._redis = redis
        self.guard = RedisGuard.of_store(
            "replay", redis, guard, timeout=timeout, retry_interval=retry_interval
        )
        self.prefix = prefix
        self._memory: TTLMap[str, str] = TTLMap(max_memory_entries, clock)

    @property
    def using_fallback(self) -> bool:
        """Whether answers currently come from memory (always, without Redis)."""
        return self.guard is None or self.guard.using_fallback

    def _refuse_if_closed(self) -> None:
        """Called instead of Redis: refuse when ``closed`` rather than answer from memory."""
        if self.when_down == "closed" and self.guard is not None:
            raise ReplayStoreUnavailableError(self.guard.retry_interval)

    async def health_check(self) -> CheckResult:
        """Readiness: unhealthy while Redis is unavailable and the store is ``closed``."""
        if self.guard is not None:
            await self.guard.health_check()  # pings Redis: an outage is noticed here too
        detail = {"when_down": self.when_down}
        if self.when_down == "closed" and self.using_fallback:
            return CheckResult(HealthStatus.UNHEALTHY, {**detail, "backend": "none"})
        backend = "memory" if self.using_fallback else "redis"
        return CheckResult(HealthStatus.HEALTHY, {**detail, "backend": backend})

    def clear_memory(self) -> None:
        """Forget every id kept in this process (the memory store and Redis's mirror)."""
        self._memory.clear()

    async def clear(self) -> None:
        """Forget every id: this process's, and Redis's under this store's prefix."""
        self.clear_memory()
        if self._redis is not None:
            async for name in self._redis.scan_iter(match=self.prefix + "*", count=500):
                await self._redis.delete(name)

    async def remember(self, key: str, ttl: float) -> bool:
        """Record ``key`` for ``ttl`` seconds; return ``True`` only the first time it is seen."""
        name = self.prefix + key
        redis = self._redis

        async def in_memory() -> bool:
            self._refuse_if_closed()
            return self._memory.add(name, _SEEN, ttl) is None

        if redis is None or self.guard is None:
            return await in_memory()

        async def in_redis() -> bool:
            first = bool(await redis.set(name, _SEEN, nx=True, px=_millis(ttl)))
            self._memory.put(name, _SEEN, ttl)
            return first

        return await self.guard.call(in_redis, in_memory)

    async def claim(self, key: str, *, processing_ttl: float) -> ClaimOutcome:
        """Claim ``key`` for processing, holding the claim at most ``processing_ttl`` seconds.

        The claim lapses by itself after ``processing_ttl`` (a crashed worker must not
        block the sender's retries forever); settle it with :meth:`complete` or
        :meth:`release` before that.
        """
        name = self.prefix + key
        redis = self._redis

        async def in_memory() -> ClaimOutcome:
            self._refuse_if_closed()
            return _outcome(self._memory.add(name, _PROCESSING, processing_ttl))

        if redis is None or self.guard is None:
            return await in_memory()

        async def in_redis() -> ClaimOutcome:
            if await redis.set(name, _PROCESSING, nx=True, px=_millis(processing_ttl)):
                self._memory.put(name, _PROCESSING, processing_ttl)
                return ClaimOutcome.NEW
            found = await redis.get(name)
            state = found.decode() if isinstance(found, bytes) else found
            if state == _DONE:
                self._memory.put(name, _DONE, processing_ttl)
            # Gone between the two commands: its holder just released it; the sender retries.
            return _outcome(state) if state is not None else ClaimOutcome.IN_PROGRESS

        return await self.guard.call(in_redis, in_memory)

    async def complete(self, key: str, ttl: float) -> None:
        """Mark ``key`` processed; a delivery with the same key within ``ttl`` is a duplicate."""
        name = self.prefix + key
        self._memory.put(name, _DONE, ttl)
        redis = self._redis
        if redis is None or self.guard is None:
            return

        async def in_redis() -> None:
            await redis.set(name, _DONE, px=_millis(ttl))

        await self.guard.call(in_redis, nothing)

    async def release(self, key: str) -> None:
        """Forget a claim whose processing failed, so a retry is processed."""
        name = self.prefix + key
        self._memory.pop(name)
        redis = self._redis
        if redis is None or self.guard is None:
            return

        async def in_redis() -> None:
            await redis.delete(name)

        await self.guard.call(in_redis, nothing)


def _outcome(state: str | None) -> ClaimOutcome:
    if state is None:
        return ClaimOutcome.NEW
    return ClaimOutcome.DUPLICATE if state == _DONE else ClaimOutcome.IN_PROGRESS


def _millis(seconds: float) -> int:
    return max(1, int(seconds * 1000))
