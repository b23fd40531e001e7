"""Rate limiting settings (issue: rate limiting through Redis with fallback)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from hardenkit._settings._base import CommaList, Section

RedisDownBehaviour = Literal["fallback", "open", "closed"]


class RateLimitSettings(Section):
    """How often: rates, routes they apply to, behaviour while Redis is down."""

    rate_limit_default: str = Field(
        default="100/15m", description="Limit per client ip on every non-exempt route."
    )
    rate_limit_auth: str = Field(
        default="5/15m", description="Limit per client ip on the auth paths (login, token)."
    )
    rate_limit_tenant: str = Field(
        default="1000/15m", description="Limit per verified tenant after authentication."
    )
    auth_paths: CommaList = Field(
        default_factory=lambda: ["/auth/*"],
        description="Paths the strict auth limit applies to (exact, or a prefix ending in `*`).",
    )
    rate_limit_redis_down: RedisDownBehaviour = Field(
        default="fallback",
        description="While Redis is down: `fallback` (memory), `open` (allow), `closed` (503).",
    )
