"""Core settings: environment, Redis, request ids, errors, health."""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import Field, SecretStr, field_validator

from hardenkit._forwarding import ForwardedHeader
from hardenkit._settings._base import CommaList, Section, SettingProblem

Environment = Literal["development", "test", "staging", "production"]
RequestIdTrust = Literal["any", "proxies", "none"]


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
        description="Seconds a Redis command may take before the memory fallback takes over.",
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
    request_id_trust: RequestIdTrust = Field(
        default="proxies",
        description=(
            "Whose incoming request id is kept: `proxies` (only from a peer in "
            "HARDENKIT_TRUSTED_PROXIES), `any` (every client), `none` (always a fresh id)."
        ),
    )
    trusted_proxies: CommaList = Field(
        default_factory=list,
        description=(
            "CIDRs of reverse proxies whose forwarding header (HARDENKIT_FORWARDED_HEADER) "
            "is believed."
        ),
    )
    forwarded_header: ForwardedHeader = Field(
        default="x-forwarded-for",
        description=(
            "The one header the trusted proxies write: `x-forwarded-for` (scheme from "
            "X-Forwarded-Proto) or `forwarded` (RFC 7239, scheme from `proto=`); the other "
            "is ignored."
        ),
    )
    problem_type_base: str = Field(
        default="urn:hardenkit:problem:",
        description="Prefix of the `type` URI in problem+json bodies.",
    )
    health_path: str = Field(
        default="/healthz",
        description="Liveness route (an exact path; always public, never rate limited).",
    )
    ready_path: str = Field(
        default="/readyz",
        description="Readiness route (an exact path; always public, never rate limited).",
    )
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

    @field_validator("health_path", "ready_path")
    @classmethod
    def _probe_path(cls, value: str) -> str:
        # The probes are added to the public paths: a pattern here ("/*") would make
        # every route public.
        if not value.startswith("/") or "*" in value:
            raise ValueError(f"{value!r}: an exact path starting with `/`, without `*`")
        return value

    @field_validator("forwarded_header", "request_id_trust", mode="before")
    @classmethod
    def _lowercase(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

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
        problems.extend(self._proxy_problems())
        return problems

    def _proxy_problems(self) -> list[SettingProblem]:
        # A trusted-proxy range that trusts everyone is the policy's `trusted-proxies-too-wide`
        # risk (_settings/risks.py), refused in production unless accepted by name.
        problems = []
        if self.request_id_trust == "any":
            problems.append(
                SettingProblem(
                    "HARDENKIT_REQUEST_ID_TRUST",
                    "`any`: every client chooses the request id its requests are logged and "
                    "answered under (a victim's, from an error page); keep `any` only for a "
                    "service reached solely through a mesh, else use `proxies`",
                    severity="warning",
                )
            )
        return problems
