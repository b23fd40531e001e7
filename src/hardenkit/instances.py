"""How many instances share this Redis: a heartbeat per process, counted in Redis.

Every process that runs :func:`hardenkit.install` with Redis registers itself in one
sorted set (member: a random id per process; score: when its heartbeat expires, in the
Redis server's milliseconds) every ``ttl / 3`` seconds, and reads back how many members
are still live. The key itself expires ``ttl`` after the last heartbeat, so nothing is
left behind. One key, one script: it works unchanged on Redis Cluster.

While Redis is unavailable the last count seen stays in force: the rate-limit fallback
admits ``ceil(limit / live_instances)`` per instance (docs/ratelimit.md), and readiness
and ``hardenkit doctor`` say how many instances share the stores.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import TYPE_CHECKING, Final

import structlog

from hardenkit.stores import nothing

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.cluster import RedisCluster

    from hardenkit.stores import RedisGuard

__all__ = ["InstanceRegistry", "count_live_instances", "instances_key"]

_logger = structlog.get_logger("hardenkit.instances")

# One rule for "live", shared by the heartbeat (what readiness and the fallback see) and by
# count_live_instances (what `hardenkit doctor` sees): a member whose heartbeat has not
# expired by the Redis server's clock.
_NOW: Final = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
"""
_LIVE: Final = "return redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')\n"

_HEARTBEAT: Final = (
    _NOW
    + """redis.call('ZADD', KEYS[1], now + ARGV[2], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
"""
    + _LIVE
)
_COUNT: Final = _NOW + _LIVE


def instances_key(key_prefix: str) -> str:
    """The sorted set of heartbeats under ``HARDENKIT_RATE_LIMIT_KEY_PREFIX``."""
    return f"{key_prefix}instances"


async def count_live_instances(redis: Redis | RedisCluster, key: str) -> int:
    """Return how many instances have a live heartbeat in ``key``, without adding one.

    The same rule the heartbeat counts by, so ``hardenkit doctor`` (which is no
    instance) and readiness agree. Raises what the Redis client raises.
    """
    return int(await redis.eval(_COUNT, 1, key))


class InstanceRegistry:
    """This process's heartbeat in Redis, and the number of live instances last seen.

    Args:
        redis: The shared asyncio Redis or RedisCluster client.
        guard: The app's :class:`~hardenkit.stores.RedisGuard`: a heartbeat is a Redis
            call like any other (when Redis is unavailable the last count stays).
        key: The sorted set holding the heartbeats.
        ttl: Seconds a heartbeat keeps an instance counted; one is sent every ``ttl / 3``.
    """

    def __init__(
        self,
        redis: Redis | RedisCluster,
        guard: RedisGuard,
        *,
        key: str = "hardenkit:instances",
        ttl: float = 5.0,
    ) -> None:
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        self.redis = redis
        self.guard = guard
        self.key = key
        self.ttl = ttl
        self.instance_id = uuid.uuid4().hex
        self.live_instances = 1
        """Live instances (this one included) at the last heartbeat Redis answered."""
        self._task: asyncio.Task[None] | None = None

    async def beat(self) -> int:
        """Send one heartbeat; return the live instances (the last count if Redis is away)."""

        async def in_redis() -> int:
            count = await self.redis.eval(
                _HEARTBEAT, 1, self.key, self.instance_id, int(self.ttl * 1000)
            )
            return max(1, int(count))

        async def last_seen() -> int:
            return self.live_instances

        self.live_instances = await self.guard.call(in_redis, last_seen)
        return self.live_instances

    def start(self) -> None:
        """Beat every ``ttl / 3`` seconds in a background task, until :meth:`aclose`."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            try:
                await self.beat()
            except Exception:  # a bug must not stop the heartbeat; it is logged
                _logger.exception("instance_heartbeat_failed")
            await asyncio.sleep(self.ttl / 3)

    async def aclose(self) -> None:
        """Stop beating and leave the set, so the others count one fewer at once."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

        async def leave() -> None:
            await self.redis.zrem(self.key, self.instance_id)

        await self.guard.call(leave, nothing)
