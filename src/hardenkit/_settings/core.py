"""Core settings: environment, Redis, request ids, errors, health."""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import Field, SecretStr, field_validator

from hardenkit._settings._base import CommaList, Section, SettingProblem

Environment = Literal["development", "test", "staging", "production"]


class CoreSettings(Section):
    """Settings every piece shares."""

    env: Environment = Field(
        default="development",
        description=(
            "Deployment environment; `production` turns unsafe settings into startup errors."
        ),
    )
    redis_url: SecretStr | None = Field(
        default=None,
        description="Redis URL (`redis://`, `rediss://`, `unix://`). Unset: in-memory stores only.",
    )
    redis_cluster: bool = Field(
        default=False, description="Connect to a Redis Cluster rather than a single server."
    )
    redis_socket_timeout: float = Field(
        default=0.05,
        gt=0,
        le=5,
        description=(
            "Seconds a Redis command may take before it counts as timed out (time this "
            "process's own event loop ran late is not counted)."
        ),
    )
    redis_failure_threshold: int = Field(
        default=3,
        ge=1,
        le=100,
        description=(
            "Redis timeouts in a row that switch a process to the memory fallback; a "
            "refused or closed connection switches at once, a single timeout is answered "
            "by the fallback for that call alone."
        ),
    )
    redis_retry_interval: float = Field(
        default=2.0,
        gt=0,
        le=300,
        description="Seconds to wait after a Redis failure before probing it again.",
    )
    request_id_header: str = Field(
        default="X-Request-ID", min_length=1, description="Header carrying the request id."
    )
    trusted_proxies: CommaList = Field(
        default_factory=list,
        description=(
            "CIDRs of reverse proxies whose X-Forwarded-For / Forwarded headers are believed."
        ),
    )
    problem_type_base: str = Field(
        default="urn:hardenkit:problem:",
        description="Prefix of the `type` URI in problem+json bodies.",
    )
    health_path: str = Field(default="/healthz", description="Liveness route.")
    ready_path: str = Field(default="/readyz", description="Readiness route.")
    readiness_check_timeout: float = Field(
        default=1.0, gt=0, le=30, description="Seconds each readiness check may take."
    )

    @field_validator("redis_url", mode="before")
    @classmethod
    def _empty_url_is_unset(cls, value: object) -> object:
        # `HARDENKIT_REDIS_URL=` (as `make demo` passes it) means "no Redis", not an error.
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP network (CIDR)") from None
        return value

    def collect_problems(self) -> list[SettingProblem]:
        """Report core rule violations."""
        problems = super().collect_problems()
        if self.env == "production" and self.redis_url is None:
            problems.append(
                SettingProblem(
                    "HARDENKIT_REDIS_URL",
                    "unset: rate limits and replay protection are per process, "
                    "not shared across instances",
                    severity="warning",
                )
            )
        return problems
