"""``RateLimiter``: one rate, one store, ``await limiter.hit(key)``."""

from __future__ import annotations

import hashlib
import re
from typing import Final

from hardenkit.ratelimit._switch import LIMITS
from hardenkit.ratelimit.decision import RateLimitDecision, RateLimitStore, RedisDownBehaviour
from hardenkit.ratelimit.memory import MemoryStore
from hardenkit.ratelimit.rate import Rate

__all__ = ["RateLimiter"]

_NAME: Final = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")
# Storage keys of the callers seen lately: the same client or tenant comes back many
# times, and a dict lookup costs a tenth of hashing its key again. Emptied when full,
# so a flood of distinct keys costs memory only up to this bound.
_MAX_CACHED_KEYS: Final = 4096


def check_name(name: str, what: str = "limiter") -> None:
    """Raise ``ValueError`` unless ``name`` can appear in keys, headers and metrics."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"{what} name {name!r} must match [a-z0-9][a-z0-9_.-]* (≤ 63 chars)")


def key_digest(key: str) -> str:
    """Return the fixed-size form of a caller's key used in storage.

    Hashing means no client input can make a key long, make two keys collide through
    separators, put a Cluster hash tag in a key, or leave an API key or address readable
    in Redis.
    """
    return hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


class RateLimiter:
    """Limit anything, HTTP or not (queues, agents, outbound sends), to a rate per key.

    Example::

        store = RedisStore(redis, guard=guard, instances=instances)  # docs/ratelimit.md
        limiter = RateLimiter("100/hour", store=store, name="agent-runs")
        decision = await limiter.hit(f"tenant:{tenant_id}")
        if not decision.allowed:
            await asyncio.sleep(decision.retry_after)

    Args:
        rate: A :class:`Rate` or a rate string.
        store: :class:`RedisStore` or :class:`MemoryStore` (a private memory store by
            default).
        name: Separates this limiter's keys from every other's (``[a-z0-9_.-]``).
        when_down: While Redis is down: ``fallback``, ``open`` or ``closed``.
    """

    def __init__(
        self,
        rate: Rate | str,
        *,
        store: RateLimitStore | None = None,
        name: str = "default",
        when_down: RedisDownBehaviour = "fallback",
    ) -> None:
        check_name(name)
        if when_down not in ("fallback", "open", "closed"):
            raise ValueError("when_down must be 'fallback', 'open' or 'closed'")
        self.rate = Rate.coerce(rate)
        self.store: RateLimitStore = store if store is not None else MemoryStore()
        self.name = name
        self.when_down: RedisDownBehaviour = when_down
        self._storage_keys: dict[str, str] = {}

    async def hit(self, key: str, cost: int = 1) -> RateLimitDecision:
        """Take ``cost`` units for ``key`` if they are available now.

        Args:
            key: Who or what is counted; any string (it is hashed before storage).
            cost: Units this call takes, from 1 to the rate's burst.

        Returns:
            The decision: ``allowed``, ``remaining``, ``retry_after`` (seconds)...

        Raises:
            ValueError: ``cost`` could never be granted.
        """
        if not 1 <= cost <= self.rate.burst:
            raise ValueError(f"cost must be between 1 and the burst ({self.rate.burst})")
        if LIMITS.disabled:  # hardenkit.testing.limits_disabled(): nothing is charged
            rate = self.rate
            return RateLimitDecision(
                True, rate.count, rate.burst, 0.0, 0.0, rate.period_seconds, "none"
            )
        return await self.store.decide(self._storage_key(key), self.rate, cost, self.when_down)

    def _storage_key(self, key: str) -> str:
        keys = self._storage_keys
        storage_key = keys.get(key)
        if storage_key is None:
            storage_key = f"{self.name}:{key_digest(key)}"
            if len(keys) >= _MAX_CACHED_KEYS:
                keys.clear()
            keys[key] = storage_key
        return storage_key

    def __repr__(self) -> str:
        return f"RateLimiter({str(self.rate)!r}, name={self.name!r}, store={self.store!r})"
