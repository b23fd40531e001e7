"""The security headers section: CSP, HSTS, framing, referrer and cross-origin policies."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from hardenkit._risks import risk_problem
from hardenkit._section import Section, SettingProblem
from hardenkit.headers._csp import CSP
from hardenkit.headers._grading import script_weaknesses

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


class HeadersSettings(Section):
    """What responses carry."""

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
    security_headers_legacy: bool = Field(
        default=False,
        description=(
            "Also send `X-XSS-Protection: 0` and `X-Download-Options: noopen` (no grader "
            "scores them; OWASP lists the first as deprecated)."
        ),
    )

    @field_validator("csp_html", "csp_api")
    @classmethod
    def _valid_csp(cls, value: str | None) -> str | None:
        if value is not None:
            CSP.parse(value)  # a CSPError is a ValueError: the message names the mistake
        return value

    @field_validator("permissions_policy")
    @classmethod
    def _valid_header_value(cls, value: str | None) -> str | None:
        if value is not None and not all(" " <= char <= "~" for char in value):
            raise ValueError("must be printable ASCII on one line (it is sent as a header)")
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
        """Report header rule violations, the CSP's accepted risks included."""
        problems = super().collect_problems()
        problems.extend(self._csp_risks())
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

    def _csp_risks(self) -> list[SettingProblem]:
        problems: list[SettingProblem] = []
        for setting, value in (
            ("HARDENKIT_CSP_HTML", self.csp_html),
            ("HARDENKIT_CSP_API", self.csp_api),
        ):
            if value is None:
                continue
            problems.extend(
                risk_problem(weakness.risk, weakness.message, weakness.fix, setting=setting)
                for weakness in script_weaknesses(value)
            )
        return problems
