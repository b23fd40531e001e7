"""Authentication settings (issue: tenant-claim JWT authentication)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, SecretStr

from hardenkit._settings._base import CommaList, MultiLine, Section, SettingProblem

AuthMode = Literal["enforced", "report_only", "off"]


class AuthSettings(Section):
    """Who may call: JWT verification and tenant binding."""

    auth_mode: AuthMode = Field(
        default="enforced",
        description=(
            "`enforced` refuses bad credentials; `report_only` logs them; `off` skips auth."
        ),
    )
    jwt_secret: SecretStr | None = Field(
        default=None, description="Shared secret for HS256/384/512 tokens."
    )
    jwt_public_key: Annotated[str | None, MultiLine] = Field(
        default=None, description="PEM public key for RS*/PS*/ES*/EdDSA tokens."
    )
    jwt_jwks_url: str | None = Field(default=None, description="JWKS URL of the identity provider.")
    jwt_algorithms: CommaList = Field(
        default_factory=list,
        description="Accepted algorithms; empty picks the safe default for the key source.",
    )
    jwt_issuer: str | None = Field(default=None, description="Required `iss` claim.")
    jwt_audience: CommaList = Field(
        default_factory=list, description="Accepted `aud` values (any one must match)."
    )
    jwt_leeway: float = Field(
        default=30.0, ge=0, le=300, description="Clock skew tolerated on exp/nbf/iat, seconds."
    )
    tenant_claim: str = Field(
        default="tenant_id", min_length=1, description="Claim holding the tenant id."
    )
    tenant_header: str = Field(
        default="X-Tenant-ID", min_length=1, description="Header a client may send its tenant in."
    )
    public_paths: CommaList = Field(
        default_factory=lambda: ["/healthz", "/readyz"],
        description="Paths served without credentials (exact, or a prefix ending in `*`).",
    )

    def collect_problems(self) -> list[SettingProblem]:
        """Report authentication rule violations."""
        problems = super().collect_problems()
        if self.auth_mode == "off":
            problems.append(
                SettingProblem("HARDENKIT_AUTH_MODE", "`off` is not allowed in production")
            )
        return problems
