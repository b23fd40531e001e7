"""Rate limiting: GCRA in memory or in Redis (one Lua round trip), memory while Redis is down.

See docs/ratelimit.md. The names below are the public API of this package; the most used
ones are also exported from :mod:`hardenkit`.
"""

from hardenkit.ratelimit import keys
from hardenkit.ratelimit.decision import (
    RateLimitDecision,
    RateLimitStore,
    RedisDownBehaviour,
)
from hardenkit.ratelimit.limiter import RateLimiter
from hardenkit.ratelimit.memory import MemoryStore
from hardenkit.ratelimit.middleware import RateLimitMiddleware
from hardenkit.ratelimit.rate import Rate
from hardenkit.ratelimit.redis_store import RedisStore
from hardenkit.ratelimit.routes import RouteLimit
from hardenkit.ratelimit.rules import RateLimitRule

__all__ = [
    "MemoryStore",
    "Rate",
    "RateLimitDecision",
    "RateLimitMiddleware",
    "RateLimitRule",
    "RateLimitStore",
    "RateLimiter",
    "RedisDownBehaviour",
    "RedisStore",
    "RouteLimit",
    "keys",
]
