"""The authentication section: key sources, claims, tenant binding, API keys."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator

from hardenkit._risks import risk_problem
from hardenkit._secrets import published_api_key_hashes, secret_weakness
from hardenkit._section import CommaList, MultiLine, Section, SettingProblem
from hardenkit.auth._jwks_url import check_jwks_url
from hardenkit.auth.algorithms import allowed_algorithms
from hardenkit.auth.keys import check_secret, load_public_key, public_key_algorithms

AuthMode = Literal["enforced", "report_only", "off"]

_HEADER_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")
_PARAM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]{0,63}")
_API_KEY_ENTRY = re.compile(r"[A-Za-z0-9_.-]{1,64}:[0-9a-f]{64}")


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
    jwt_max_age: float | None = Field(
        default=None, gt=0, description="Refuse tokens issued (`iat`) longer ago, seconds."
    )
    jwt_token_type: str | None = Field(
        default=None, description="Required header `typ` (`at+jwt` for RFC 9068 access tokens)."
    )
    jwt_roles_claim: str = Field(
        default="roles", min_length=1, description="Claim (or `/json/pointer`) holding roles."
    )
    jwt_scopes_claim: str = Field(
        default="scope", min_length=1, description="Claim (or `/json/pointer`) holding scopes."
    )
    jwt_jwks_allow_http_loopback: bool = Field(
        default=False, description="Accept an `http://` JWKS URL on a loopback host (local IdP)."
    )
    jwt_jwks_timeout: float = Field(
        default=5.0, gt=0, le=60, description="Seconds one JWKS fetch may take."
    )
    jwt_jwks_cache_ttl: float = Field(
        default=600.0, ge=10, le=86400, description="Seconds before JWKS keys are refreshed."
    )
    jwt_jwks_refresh_cooldown: float = Field(
        default=30.0,
        ge=1,
        le=3600,
        description="Least seconds between JWKS fetches caused by unknown `kid`s or failures.",
    )
    jwt_cache_size: int = Field(
        default=10_000, ge=0, le=1_000_000, description="Verified tokens cached (0: no cache)."
    )
    jwt_cache_ttl: float = Field(
        default=300.0,
        ge=0,
        le=3600,
        description="Longest seconds a verified token is cached (never past its `exp`).",
    )
    auth_max_header_bytes: int = Field(
        default=8192,
        ge=256,
        le=65536,
        description="Longest `Authorization` header accepted, checked before parsing.",
    )
    tenant_claim: str = Field(
        default="tenant_id", min_length=1, description="Claim holding the tenant id."
    )
    tenant_header: str = Field(
        default="X-Tenant-ID", min_length=1, description="Header a client may send its tenant in."
    )
    tenant_header_aliases: CommaList = Field(
        default_factory=list,
        description="Other headers read as the tenant header (e.g. `X-Client-ID`).",
    )
    tenant_path_params: CommaList = Field(
        default_factory=lambda: ["tenant_id"],
        description=(
            "Path parameters bound to the verified tenant like the header "
            "(403 `TENANT_MISMATCH` when they differ)."
        ),
    )
    tenant_query_params: CommaList = Field(
        default_factory=lambda: ["tenant_id"],
        description="Query parameters bound to the verified tenant like the header.",
    )
    tenant_unbound_params: CommaList = Field(
        default_factory=list,
        description=(
            "Parameters whose names say tenant (`org_id`, `teamId`...) but are not tenant "
            "ids, or that the handler checks itself (path, FastAPI query, header, cookie, "
            "body); every other such parameter must be bound."
        ),
    )
    tenant_multi_membership: bool = Field(
        default=False,
        description="Accept a list of tenants in the claim; the request picks one.",
    )
    tenant_status_cache_ttl: float = Field(
        default=60.0,
        gt=0,
        le=3600,
        description="Seconds a TenantResolver answer is cached (Redis, memory fallback).",
    )
    public_paths: CommaList = Field(
        default_factory=lambda: ["/healthz", "/readyz"],
        description="Paths served without credentials (exact, or a prefix ending in `*`).",
    )
    api_keys: CommaList = Field(
        default_factory=list,
        description="API keys as `name:sha256-hex` entries (hashes, never the keys).",
    )
    api_key_header: str = Field(
        default="X-API-Key", min_length=1, description="Header carrying an API key."
    )
    api_key_paths: CommaList = Field(
        default_factory=list,
        description="Paths that take an API key instead of a JWT (exact, or prefix `*`).",
    )

    @field_validator("tenant_header", "tenant_header_aliases", "api_key_header")
    @classmethod
    def _header_names(cls, value: str | list[str]) -> str | list[str]:
        for name in [value] if isinstance(value, str) else value:
            if not _HEADER_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not an HTTP header name")
        return value

    @field_validator("tenant_path_params", "tenant_query_params", "tenant_unbound_params")
    @classmethod
    def _param_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not _PARAM_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not a parameter name")
        return value

    @field_validator("api_keys")
    @classmethod
    def _api_key_entries(cls, value: list[str]) -> list[str]:
        for index, entry in enumerate(value):
            if not _API_KEY_ENTRY.fullmatch(entry):
                # Never echo the entry: someone may have pasted a raw key here.
                raise ValueError(
                    f"entry {index + 1} is not `name:<64 lowercase hex of sha256(key)>`"
                )
        return value

    @field_validator("jwt_secret", "jwt_public_key", "jwt_jwks_url", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # `HARDENKIT_JWT_SECRET=` (a template's blank line) means no key source, as an
        # empty HARDENKIT_REDIS_URL means no Redis: not a second source to refuse.
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("public_paths", "api_key_paths")
    @classmethod
    def _paths(cls, value: list[str]) -> list[str]:
        for path in value:
            if not path.startswith("/") or "*" in path[:-1]:
                raise ValueError(f"{path!r}: paths start with `/`; `*` only at the end")
        return value

    def collect_problems(self) -> list[SettingProblem]:
        """Report authentication rule violations."""
        problems = super().collect_problems()
        problems.extend(self._key_source_problems())
        if self.auth_mode == "off":
            problems.append(
                SettingProblem(
                    "HARDENKIT_AUTH_MODE",
                    "`off` is not allowed in production",
                    fix="use `enforced` (or `report_only` during a rollout)",
                )
            )
        elif self.auth_mode == "report_only":
            problems.append(
                risk_problem(
                    "auth-report-only",
                    "`report_only` lets every bad credential through (each is logged): auth "
                    "is off for callers by another name",
                    "use `enforced` once the rollout's logs show no refusals",
                )
            )
        problems.extend(self._published_api_key_problems())
        if self.api_key_paths and not self.api_keys:
            problems.append(
                SettingProblem(
                    "HARDENKIT_API_KEYS",
                    "empty while HARDENKIT_API_KEY_PATHS is set: those paths refuse everyone",
                    fix="add `name:sha256-hex` entries, or empty HARDENKIT_API_KEY_PATHS",
                )
            )
        return problems

    def _key_source_problems(self) -> list[SettingProblem]:
        problems: list[SettingProblem] = []

        def refuse(setting: str, message: str) -> None:
            problems.append(SettingProblem(setting, message, production_only=False))

        sources = [
            name
            for name, value in (
                ("HARDENKIT_JWT_SECRET", self.jwt_secret),
                ("HARDENKIT_JWT_PUBLIC_KEY", self.jwt_public_key),
                ("HARDENKIT_JWT_JWKS_URL", self.jwt_jwks_url),
            )
            if value is not None
        ]
        if len(sources) > 1:
            refuse(sources[0], f"set only one key source, not {' and '.join(sources)}")
            return problems
        if not sources:
            if self.auth_mode != "off":
                problems.append(
                    SettingProblem(
                        "HARDENKIT_JWT_SECRET",
                        "no key source: set HARDENKIT_JWT_SECRET, HARDENKIT_JWT_PUBLIC_KEY "
                        "or HARDENKIT_JWT_JWKS_URL (until then every protected route "
                        "answers 401)",
                    )
                )
            return problems
        try:
            problems.extend(self._key_problems())
        except ValueError as error:
            refuse("HARDENKIT_JWT_ALGORITHMS", str(error))
        if self.jwt_jwks_url is not None:
            try:
                check_jwks_url(
                    self.jwt_jwks_url, allow_http_loopback=self.jwt_jwks_allow_http_loopback
                )
            except ValueError as error:
                refuse("HARDENKIT_JWT_JWKS_URL", str(error))
        if self.jwt_jwks_allow_http_loopback:
            problems.append(
                SettingProblem(
                    "HARDENKIT_JWT_JWKS_ALLOW_HTTP_LOOPBACK",
                    "plain http is not for production",
                    fix="serve the JWKS over https and set this to false",
                )
            )
        problems.extend(self._claim_problems(asymmetric=self.jwt_secret is None))
        return problems

    def _key_problems(self) -> list[SettingProblem]:
        """Check the one key source against the algorithms; ``ValueError`` for those."""
        if self.jwt_secret is not None:
            secret = self.jwt_secret.get_secret_value()
            algorithms = allowed_algorithms("secret", self.jwt_algorithms)
            try:
                check_secret(secret.encode(), algorithms)
            except ValueError as error:
                return [SettingProblem("HARDENKIT_JWT_SECRET", str(error), production_only=False)]
            return self._weak_secret_problems(secret)
        if self.jwt_public_key is not None:
            try:
                key = load_public_key(self.jwt_public_key)
            except ValueError as error:
                return [
                    SettingProblem("HARDENKIT_JWT_PUBLIC_KEY", str(error), production_only=False)
                ]
            public_key_algorithms(key, self.jwt_algorithms)
            return []
        allowed_algorithms("jwks", self.jwt_algorithms)
        return []

    def _weak_secret_problems(self, secret: str) -> list[SettingProblem]:
        weakness = secret_weakness(secret)
        if weakness is None:
            return []
        return [
            SettingProblem(
                "HARDENKIT_JWT_SECRET",
                weakness,
                fix="generate one with "
                "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`",
            )
        ]

    def _published_api_key_problems(self) -> list[SettingProblem]:
        published = published_api_key_hashes()
        weak = [
            str(index + 1)
            for index, entry in enumerate(self.api_keys)
            if entry.partition(":")[2] in published
        ]
        if not weak:
            return []
        return [
            SettingProblem(
                "HARDENKIT_API_KEYS",
                f"entry {', '.join(weak)} is the hash of a published placeholder key",
                fix="issue random keys (`secrets.token_urlsafe(32)`) and configure their hashes",
            )
        ]

    def _claim_problems(self, *, asymmetric: bool) -> list[SettingProblem]:
        # A provider's keys sign tokens for every API it serves: without an audience
        # check, a token minted for another API of the same provider is accepted here.
        severity: Literal["error", "warning"] = "error" if asymmetric else "warning"
        problems = []
        if not self.jwt_audience:
            problems.append(
                SettingProblem(
                    "HARDENKIT_JWT_AUDIENCE",
                    "unset: tokens meant for other services are accepted",
                    severity=severity,
                    fix="set it to the audience your identity provider puts in this API's tokens",
                )
            )
        if self.jwt_issuer is None:
            problems.append(
                SettingProblem(
                    "HARDENKIT_JWT_ISSUER",
                    "unset: the token's issuer is not checked",
                    severity=severity,
                    fix="set it to your identity provider's issuer URL",
                )
            )
        return problems
