"""Security header, timeout and CORS settings (issue: headers and request timeouts)."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from hardenkit._paths import check_pattern
from hardenkit._settings._base import CommaList, Section, SettingProblem

ReferrerPolicySetting = Literal[
    "no-referrer",
    "no-referrer-when-downgrade",
    "origin",
    "origin-when-cross-origin",
    "same-origin",
    "strict-origin",
    "strict-origin-when-cross-origin",
    "unsafe-url",
]
_ONE_YEAR = 31_536_000
_LARGE_BODY_BYTES = 64 * 1024 * 1024


class HeadersSettings(Section):
    """What responses carry and how long requests may take."""

    request_timeout: float = Field(
        default=30.0, gt=0, le=3600, description="Seconds a request may take before a 504."
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
    hsts_max_age: int = Field(
        default=63_072_000,
        ge=0,
        description="`Strict-Transport-Security` max-age (seconds); sent on https only.",
    )
    hsts_include_subdomains: bool = Field(
        default=True, description="Add `includeSubDomains` to HSTS."
    )
    hsts_preload: bool = Field(
        default=False,
        description="Add `preload` to HSTS (needs includeSubDomains and a max-age of a year).",
    )
    referrer_policy: ReferrerPolicySetting = Field(
        default="no-referrer", description="`Referrer-Policy` on every response."
    )
    frame_options: Literal["DENY", "SAMEORIGIN"] = Field(
        default="DENY", description="`X-Frame-Options` on every response."
    )
    cross_origin_opener_policy: Literal[
        "same-origin", "same-origin-allow-popups", "unsafe-none"
    ] = Field(default="same-origin", description="`Cross-Origin-Opener-Policy`.")
    cross_origin_resource_policy: Literal["same-origin", "same-site", "cross-origin"] = Field(
        default="same-origin", description="`Cross-Origin-Resource-Policy`."
    )
    cross_origin_embedder_policy: Literal["off", "require-corp", "credentialless"] = Field(
        default="off",
        description="`Cross-Origin-Embedder-Policy`; `off` sends none (it breaks embedding).",
    )
    permissions_policy: str | None = Field(
        default=None,
        description="`Permissions-Policy`; unset uses hardenkit's deny-list of powerful features.",
    )
    csp_html: str | None = Field(
        default=None,
        description=(
            "CSP for HTML responses (`'nonce-{nonce}'` marks the nonce); unset uses the "
            "strict default."
        ),
    )
    csp_api: str | None = Field(
        default=None,
        description=(
            "CSP for non-HTML responses; unset: `default-src 'none'; frame-ancestors 'none'`."
        ),
    )
    csp_report_only: bool = Field(
        default=False,
        description="Send CSP as `Content-Security-Policy-Report-Only` (reports, blocks nothing).",
    )
    csp_report_path: str | None = Field(
        default=None,
        description="Path of the CSP report endpoint `install()` adds; unset: no reports.",
    )
    csp_report_max_bytes: int = Field(
        default=8192, ge=256, le=1_048_576, description="Largest CSP report body accepted."
    )
    docs_csp_preset: bool = Field(
        default=True,
        description="Give FastAPI's /docs and /redoc the policy under which they render.",
    )
    security_headers_keep_app_values: bool = Field(
        default=True,
        description="A security header the application set itself wins over hardenkit's.",
    )

    @field_validator("csp_html", "csp_api")
    @classmethod
    def _valid_csp(cls, value: str | None) -> str | None:
        if value is not None:
            from hardenkit.headers._csp import CSP  # noqa: PLC0415 - settings load first

            CSP.parse(value)  # a CSPError is a ValueError: the message names the mistake
        return value

    @field_validator("permissions_policy")
    @classmethod
    def _valid_header_value(cls, value: str | None) -> str | None:
        if value is not None and not all(" " <= char <= "~" for char in value):
            raise ValueError("must be printable ASCII on one line (it is sent as a header)")
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

    @field_validator("csp_report_path")
    @classmethod
    def _valid_report_path(cls, value: str | None) -> str | None:
        if value is not None and (
            not value.startswith("/") or value.startswith("//") or any(c in value for c in " ;,\"'")
        ):
            raise ValueError("must be a path such as /csp-report")
        return value

    def collect_problems(self) -> list[SettingProblem]:
        """Report header, CORS and timeout rule violations."""
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
        if self.hsts_preload and (
            self.hsts_max_age < _ONE_YEAR or not self.hsts_include_subdomains
        ):
            problems.append(
                SettingProblem(
                    "HARDENKIT_HSTS_PRELOAD",
                    "preload needs HARDENKIT_HSTS_INCLUDE_SUBDOMAINS=true and "
                    f"HARDENKIT_HSTS_MAX_AGE >= {_ONE_YEAR} (one year)",
                    production_only=False,
                )
            )
        if self.csp_report_only:
            problems.append(
                SettingProblem(
                    "HARDENKIT_CSP_REPORT_ONLY",
                    "the CSP blocks nothing in report-only mode; use it for rollout only",
                    severity="warning",
                )
            )
            if self.csp_report_path is None:
                problems.append(
                    SettingProblem(
                        "HARDENKIT_CSP_REPORT_PATH",
                        "report-only mode without a report endpoint: violations reach "
                        "browser consoles only",
                        severity="warning",
                        production_only=False,
                    )
                )
        if self.hsts_max_age < _ONE_YEAR:
            problems.append(
                SettingProblem(
                    "HARDENKIT_HSTS_MAX_AGE",
                    "less than a year: browsers forget https-only between visits",
                    severity="warning",
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
