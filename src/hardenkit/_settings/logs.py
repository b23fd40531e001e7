"""The logging section: redaction, log format and level, audit events."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, SecretStr, field_validator

from hardenkit._section import CommaList, Section, SettingProblem

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
LogFormat = Literal["auto", "json", "console"]

_MIN_PSEUDONYMIZATION_KEY_LENGTH = 32


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
        if key is not None and len(key.get_secret_value()) < _MIN_PSEUDONYMIZATION_KEY_LENGTH:
            problems.append(
                SettingProblem(
                    "HARDENKIT_LOG_PSEUDONYMIZATION_KEY",
                    f"shorter than {_MIN_PSEUDONYMIZATION_KEY_LENGTH} characters: "
                    "pseudonyms of guessable values could be reversed by brute force",
                )
            )
        return problems
