"""The request section: how long a request may take, how large its body, who may read it.

The timeout (:mod:`hardenkit.timeouts`), body limit (:mod:`hardenkit.bodylimit`) and CORS
(:mod:`hardenkit._cors`) layers read these.
"""

from __future__ import annotations

from typing import Final, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from hardenkit._paths import PathPatterns, check_pattern
from hardenkit._section import CommaList, Section, SettingProblem

__all__ = ["RequestSettings"]

_LARGE_BODY_BYTES = 64 * 1024 * 1024


REQUEST_TIMEOUT_CAP: Final = 3600.0
"""``HARDENKIT_REQUEST_TIMEOUT``'s upper bound: a route budget past it is no timeout."""


class RequestSettings(Section):
    """How long requests may take, how large their bodies, which origins may read them."""

    request_timeout: float = Field(
        default=30.0,
        gt=0,
        le=REQUEST_TIMEOUT_CAP,
        description="Seconds a request may take before a 504.",
    )
    request_timeout_status: Literal[504, 408, 503] = Field(
        default=504, description="Status answered when a request runs out of time."
    )
    request_timeout_routes: dict[str, float] = Field(
        default_factory=dict,
        description=(
            'Per-route timeouts as JSON, e.g. `{"/api/reports/*": 120}` '
            "(exact path, or a prefix ending in `*`)."
        ),
    )
    streaming_paths: CommaList = Field(
        default_factory=list,
        description=(
            "Paths exempt from the request timeout (streams that are not "
            "`text/event-stream`; SSE and WebSockets are exempt anyway)."
        ),
    )
    max_body_bytes: int = Field(
        default=1024 * 1024,
        ge=1,
        description=(
            "Largest request body accepted on any route (413 `PAYLOAD_TOO_LARGE` beyond; a "
            "`Content-Length` over it is refused before the body is read)."
        ),
    )
    max_body_bytes_paths: dict[str, int] = Field(
        default_factory=dict,
        description=(
            'Per-route body limits as JSON, e.g. `{"/api/uploads/*": 104857600}` '
            "(exact path, or a prefix ending in `*`)."
        ),
    )
    cors_origins: CommaList = Field(
        default_factory=list, description="Origins allowed by CORS; empty disables CORS."
    )
    cors_allow_credentials: bool = Field(
        default=False,
        description="Let CORS requests carry cookies/authorization (never with `*` origins).",
    )
    cors_allow_methods: CommaList = Field(
        default_factory=lambda: ["GET", "POST", "PUT", "PATCH", "DELETE"],
        description="Methods allowed in CORS requests.",
    )
    cors_allow_headers: CommaList = Field(
        default_factory=lambda: ["Authorization", "Content-Type"],
        description=(
            "Request headers allowed in CORS requests (the request id and tenant headers "
            "are added)."
        ),
    )
    cors_expose_headers: CommaList = Field(
        default_factory=lambda: ["Retry-After"],
        description="Response headers scripts may read (the request id header is added).",
    )
    cors_max_age: int = Field(
        default=600, ge=0, le=86400, description="Seconds browsers may cache a preflight."
    )

    @field_validator("streaming_paths")
    @classmethod
    def _valid_streaming_paths(cls, value: list[str]) -> list[str]:
        PathPatterns(value)
        return value

    @field_validator("request_timeout_routes")
    @classmethod
    def _valid_routes(cls, value: dict[str, float]) -> dict[str, float]:
        for pattern, seconds in value.items():
            if not pattern.startswith("/") and pattern != "*":
                raise ValueError(f"route {pattern!r} must be a path starting with '/'")
            if "*" in pattern[:-1]:
                raise ValueError(f"route {pattern!r}: '*' is only allowed at the end")
            if not 0 < seconds <= 86_400:
                raise ValueError(f"route {pattern!r}: timeout must be in (0, 86400] seconds")
        return value

    @field_validator("max_body_bytes_paths")
    @classmethod
    def _valid_body_limits(cls, value: dict[str, int]) -> dict[str, int]:
        for pattern, limit in value.items():
            check_pattern(pattern)
            if limit < 1:
                raise ValueError(f"route {pattern!r}: the body limit must be at least 1 byte")
        return value

    def collect_problems(self) -> list[SettingProblem]:
        """Report CORS, body-limit and timeout rule violations."""
        problems = super().collect_problems()
        problems.extend(self._cors_problems())
        if self.max_body_bytes > _LARGE_BODY_BYTES:
            problems.append(
                SettingProblem(
                    "HARDENKIT_MAX_BODY_BYTES",
                    f"over {_LARGE_BODY_BYTES // (1024 * 1024)} MiB lets every route take "
                    "bodies that large; raise it only for the routes that need it, in "
                    "HARDENKIT_MAX_BODY_BYTES_PATHS",
                    severity="warning",
                    production_only=False,
                )
            )
        large = [
            pattern
            for pattern, limit in self.max_body_bytes_paths.items()
            if pattern in {"*", "/*"} and limit > _LARGE_BODY_BYTES
        ]
        if large:
            problems.append(
                SettingProblem(
                    "HARDENKIT_MAX_BODY_BYTES_PATHS",
                    f"`{large[0]}` over {_LARGE_BODY_BYTES // (1024 * 1024)} MiB lets every "
                    "route take bodies that large; list the routes that need it one by one",
                    severity="warning",
                    production_only=False,
                )
            )
        return problems

    def _cors_problems(self) -> list[SettingProblem]:
        name = "HARDENKIT_CORS_ORIGINS"
        problems: list[SettingProblem] = []
        origins = self.cors_origins
        if "*" in origins:
            if self.cors_allow_credentials:
                problems.append(
                    SettingProblem(
                        name,
                        "'*' with HARDENKIT_CORS_ALLOW_CREDENTIALS=true would let any site "
                        "make credentialed requests; list the origins",
                        production_only=False,
                    )
                )
            if len(origins) > 1:
                problems.append(
                    SettingProblem(name, "'*' next to other origins", production_only=False)
                )
            if not self.cors_allow_credentials:
                problems.append(
                    SettingProblem(name, "'*' lets every site read responses", severity="warning")
                )
        for origin in origins:
            if origin == "*":
                continue
            reason = _origin_problem(origin)
            if reason:
                problems.append(SettingProblem(name, f"{origin!r} {reason}", production_only=False))
            elif origin.startswith("http://"):
                problems.append(
                    SettingProblem(name, f"{origin!r} is not https", severity="warning")
                )
        return problems


def _origin_problem(origin: str) -> str | None:
    """Return why ``origin`` can never match a browser's ``Origin`` header, or ``None``."""
    if origin.lower() == "null":
        return "is the origin of sandboxed frames and files; any site can send it"
    try:
        parts = urlsplit(origin)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        return "is not an origin (scheme://host[:port])"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "is not an origin (scheme://host[:port])"
    if parts.path or parts.query or parts.fragment or "@" in parts.netloc:
        return "must be scheme://host[:port] with no path or trailing slash"
    if origin != origin.lower():
        return "must be lower-case (browsers send it lower-case)"
    return None
