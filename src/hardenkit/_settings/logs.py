"""The logging section: redaction, log format and level, audit events."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, SecretStr, field_validator

from hardenkit._section import CommaList, Section, SettingProblem

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
LogFormat = Literal["auto", "json", "console"]

_MIN_PSEUDONYMIZATION_KEY_LENGTH = 32
# Names no allow-list should hold: never "looks secret but is not".
_PLAINLY_SECRET = (
    "password",
    "passwd",
    "passphrase",
    "secret",
    "authorization",
    "apikey",
    "privatekey",
    "cookie",
    "bearer",
    "credential",
    "signature",
)
_NOT_ALNUM = re.compile(r"[^a-z0-9]")
# A value of the kind the entropy detector exists for: a pattern that matches it keeps
# every such secret.
_RANDOM_LOOKING = "tR8kZq2LwX9vB4nM7cJ1pY6sH3dF5gK0"


class LoggingSettings(Section):
    """What the logs may say and how they are rendered."""

    log_level: LogLevel = Field(default="INFO", description="Minimum level logged.")
    log_format: LogFormat = Field(
        default="auto", description="`auto`: JSON in production/staging, console otherwise."
    )
    log_redact_keys: CommaList = Field(
        default_factory=list,
        description=(
            "More field names whose values are redacted whole, matched anywhere in the "
            "normalised name (`iban` also matches `payoutIban`)."
        ),
    )
    log_allow_keys: CommaList = Field(
        default_factory=list,
        description=(
            "Field names that look secret but are not (`token_type`); values still scanned."
        ),
    )
    log_allow_patterns: CommaList = Field(
        default_factory=list,
        description=(
            "Regexes for long random-looking values that are not secrets "
            "(`[0-9a-f]{32}` for MD5 hashes); vendor keys and JWTs are always redacted."
        ),
    )
    log_pseudonymize_keys: CommaList = Field(
        default_factory=list,
        description=(
            "Field names whose values are replaced by an HMAC-SHA256 pseudonym "
            "(joinable, not readable), e.g. `email,user_id`."
        ),
    )
    log_pseudonymization_key: SecretStr | None = Field(
        default=None,
        description="HMAC key for `HARDENKIT_LOG_PSEUDONYMIZE_KEYS` (at least 32 characters).",
    )
    log_max_depth: int = Field(
        default=16,
        ge=2,
        le=64,
        description="Nesting depth below which logged structures are replaced whole.",
    )
    log_max_string_length: int = Field(
        default=65_536,
        ge=256,
        le=10_485_760,
        description="Characters of one logged string kept (and scanned); the rest is cut.",
    )
    log_audit_file: str | None = Field(
        default=None,
        description=(
            "Also write audit events as JSON lines to this file, rotated at midnight UTC "
            "(one file per day)."
        ),
    )

    @field_validator("log_allow_patterns")
    @classmethod
    def _patterns_compile(cls, value: list[str]) -> list[str]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"a pattern does not compile: {exc.msg}") from None
        return value

    def collect_problems(self) -> list[SettingProblem]:
        """Report logging rule violations."""
        problems = super().collect_problems()
        key = self.log_pseudonymization_key
        if self.log_pseudonymize_keys and key is None:
            problems.append(
                SettingProblem(
                    "HARDENKIT_LOG_PSEUDONYMIZATION_KEY",
                    "required when HARDENKIT_LOG_PSEUDONYMIZE_KEYS is set",
                    production_only=False,
                )
            )
        problems += self._allow_problems()
        if key is not None and len(key.get_secret_value()) < _MIN_PSEUDONYMIZATION_KEY_LENGTH:
            problems.append(
                SettingProblem(
                    "HARDENKIT_LOG_PSEUDONYMIZATION_KEY",
                    f"shorter than {_MIN_PSEUDONYMIZATION_KEY_LENGTH} characters: "
                    "pseudonyms of guessable values could be reversed by brute force",
                )
            )
        return problems

    def _allow_problems(self) -> list[SettingProblem]:
        """Allow-lists that switch redaction off for what is plainly a secret."""
        problems = []
        secret_names = [
            name
            for name in self.log_allow_keys
            if any(term in _NOT_ALNUM.sub("", name.lower()) for term in _PLAINLY_SECRET)
        ]
        if secret_names:
            problems.append(
                SettingProblem(
                    "HARDENKIT_LOG_ALLOW_KEYS",
                    f"{', '.join(secret_names)} name secrets: their values are logged unless "
                    "a detector recognises them; list only names that look secret but are not",
                    severity="warning",
                    production_only=False,
                )
            )
        broad = [
            pattern
            for pattern in self.log_allow_patterns
            if re.fullmatch(pattern, _RANDOM_LOOKING) is not None
        ]
        if broad:
            problems.append(
                SettingProblem(
                    "HARDENKIT_LOG_ALLOW_PATTERNS",
                    f"{', '.join(broad)} matches any random-looking value, secrets included: "
                    "they are logged unless a vendor detector recognises them; match only the "
                    "shape you mean (`[0-9a-f]{32}`)",
                    severity="warning",
                    production_only=False,
                )
            )
        return problems
