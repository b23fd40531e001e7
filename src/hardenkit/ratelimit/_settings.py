"""The rate-limit section: the rules' rates, exemptions, the Redis outage fallback."""

from __future__ import annotations

from typing import Final, Literal

from pydantic import Field, field_validator

from hardenkit._paths import PathPatterns
from hardenkit._section import CommaList, Section, SettingProblem
from hardenkit.ratelimit.rate import Rate

RedisDownBehaviour = Literal["fallback", "open", "closed"]

_DEFAULT_AUTH_RATE: Final = "5/15m"
# Beyond these a login limit is off in all but name: a human retries a few times. 30 a
# minute is 43,200 guesses a day from one address; the default allows 480.
_LOGIN_PER_MINUTE: Final = 30
_LOGIN_BURST: Final = 50


class RateLimitSettings(Section):
    """How often: rates, routes they apply to, behaviour while Redis is down."""

    rate_limit_default: str = Field(
        default="100/15m", description="Limit per client ip on every non-exempt route."
    )
    rate_limit_auth: str = Field(
        default=_DEFAULT_AUTH_RATE,
        description="Limit per client ip on the auth paths (login, token).",
    )
    rate_limit_tenant: str = Field(
        default="1000/15m", description="Limit per verified tenant after authentication."
    )
    rate_limit_webhook: str = Field(
        default="1000/1m",
        description=(
            "Limit per webhook path (`HARDENKIT_WEBHOOK_PATHS`) instead of the per-ip default; "
            "only deliveries whose signature verified are counted."
        ),
    )
    auth_paths: CommaList = Field(
        default_factory=lambda: ["/auth/*"],
        description="Paths the strict auth limit applies to (exact, or a prefix ending in `*`).",
    )
    rate_limit_redis_down: RedisDownBehaviour = Field(
        default="fallback",
        description="While Redis is down: `fallback` (memory), `open` (allow), `closed` (503).",
    )
    rate_limit_fallback_share: Literal["auto"] | float = Field(
        default="auto",
        description=(
            "While Redis is unavailable, the part of each limit one instance's fallback "
            "admits: `auto` (1 / live instances, counted by heartbeats in Redis), a "
            "fraction in (0, 1], or `1` (the whole limit per instance)."
        ),
    )
    rate_limit_reservation_seconds: float = Field(
        default=10.0,
        ge=1.0,
        le=3600.0,
        description=(
            "With the `auto` share, how long each instance's reservation of a key (its "
            "1 / live instances of what is left, which no other instance may take) holds "
            "after its last decision of the key: the longest a quiet instance keeps units "
            "from the others, and the longest after it last decided a key that it may "
            "spend them while Redis is unavailable."
        ),
    )
    rate_limit_exempt_paths: CommaList = Field(
        default_factory=list,
        description="Paths never rate limited, besides the health routes (exact or prefix `*`).",
    )
    rate_limit_key_prefix: str = Field(
        default="hk:rl:",
        min_length=1,
        max_length=64,
        pattern=r"^[^{}\s]+$",
        description="Prefix of rate-limit keys in Redis (no braces: they are the hash tag).",
    )
    rate_limit_memory_max_keys: int = Field(
        default=100_000,
        ge=1,
        le=10_000_000,
        description="Keys the in-memory store (and fallback) keeps at most; LRU beyond.",
    )
    rate_limit_ipv6_prefix_length: int = Field(
        default=64, ge=1, le=128, description="IPv6 clients are counted per network of this size."
    )
    rate_limit_legacy_headers: bool = Field(
        default=False, description="Also send `X-RateLimit-Limit/Remaining/Reset`."
    )

    @field_validator(
        "rate_limit_default", "rate_limit_auth", "rate_limit_tenant", "rate_limit_webhook"
    )
    @classmethod
    def _rate(cls, value: str) -> str:
        Rate.parse(value)  # a ValueError names the expected form; pydantic names the setting
        return value

    @field_validator("rate_limit_fallback_share", mode="before")
    @classmethod
    def _auto_in_any_case(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("rate_limit_fallback_share")
    @classmethod
    def _share(cls, value: str | float) -> str | float:
        if value != "auto" and not 0 < float(value) <= 1:
            raise ValueError("must be 'auto' or a fraction in (0, 1]")
        return value

    @field_validator("auth_paths", "rate_limit_exempt_paths")
    @classmethod
    def _limit_paths(cls, value: list[str]) -> list[str]:
        PathPatterns(value)
        return value

    def collect_problems(self) -> list[SettingProblem]:
        """Report a login limit so loose that it no longer slows password guessing."""
        problems = super().collect_problems()
        auth = Rate.parse(self.rate_limit_auth)
        per_minute = auth.count * 60 / auth.period_seconds
        if per_minute > _LOGIN_PER_MINUTE or auth.burst > _LOGIN_BURST:
            problems.append(
                SettingProblem(
                    "HARDENKIT_RATE_LIMIT_AUTH",
                    f"`{self.rate_limit_auth}` lets one client make {auth.burst} login "
                    f"attempt{'s' if auth.burst != 1 else ''} at once and "
                    f"{per_minute * 60 * 24:,.0f} a day: the login limit no longer slows "
                    "password guessing",
                    severity="warning",
                    production_only=False,
                    fix=f"keep it to a few tries a minute at most (the default is "
                    f"{_DEFAULT_AUTH_RATE})",
                )
            )
        return problems
