"""The signing section: webhook secrets, message keys, the replay store."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from cryptography.hazmat.primitives import serialization
from pydantic import BeforeValidator, Field, SecretStr, field_validator
from pydantic_settings import NoDecode

from hardenkit._paths import PathPatterns
from hardenkit._published import (
    PUBLISHED_PRIVATE_KEYS,
    PUBLISHED_PUBLIC_KEYS,
    PUBLISHED_WEBHOOK_SECRETS,
)
from hardenkit._secrets import secret_weakness
from hardenkit._section import CommaList, MultiLine, Section, SettingProblem
from hardenkit.signing._key_id import safe_key_id
from hardenkit.signing._secret import webhook_key, webhook_keys
from hardenkit.signing.keys import load_private_key, load_public_key, public_key_text

WebhookSchemeSetting = Literal["standard", "stripe"]
DuplicateHandlingSetting = Literal["acknowledge", "refuse"]

_LONG_WINDOW_SECONDS = 600


def _split_key_map(value: Any) -> Any:
    """Accept a JSON object or ``id=key,id=key`` text for key-id -> key settings."""
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return {}
        if text.startswith("{"):
            return json.loads(text)
        pairs: dict[str, str] = {}
        for item in text.split(","):
            key_id, separator, key = item.strip().partition("=")
            if not separator or not key_id.strip():
                raise ValueError("expected a JSON object or key_id=public_key pairs")
            if key_id.strip() in pairs:
                raise ValueError(f"key id {key_id.strip()!r} is listed twice")
            pairs[key_id.strip()] = key.strip()
        return pairs
    return value


KeyMap = Annotated[dict[str, str], NoDecode, BeforeValidator(_split_key_map)]
"""Key id -> key, from ``{"id": "key"}`` or ``id=key,id2=key2`` (base64 keys keep their ``=``)."""


class SigningSettings(Section):
    """Secrets and trusted keys for signed webhooks and service messages."""

    webhook_secret: SecretStr | None = Field(
        default=None,
        description=(
            "Webhook secret(s), comma-separated during a rotation (all verify; all sign). "
            "Standard Webhooks: `whsec_<base64>` of at least 24 bytes."
        ),
    )
    webhook_scheme: WebhookSchemeSetting = Field(
        default="standard",
        description="`standard` (Standard Webhooks headers) or `stripe` (`t=…,v1=…` header).",
    )
    webhook_paths: CommaList = Field(
        default_factory=list,
        description=(
            "Paths `install()` guards with `WebhookMiddleware` (exact, or a prefix ending "
            "in `*`); empty installs none."
        ),
    )
    webhook_tolerance: int = Field(
        default=300,
        ge=1,
        le=3600,
        description="Seconds a webhook timestamp may differ from now, either way.",
    )
    webhook_max_body_bytes: int = Field(
        default=1024 * 1024,
        ge=1,
        le=64 * 1024 * 1024,
        description="Largest webhook body read (413 beyond).",
    )
    webhook_on_duplicate: DuplicateHandlingSetting = Field(
        default="acknowledge",
        description=(
            "A delivery already processed: `acknowledge` (200, not processed again) or "
            "`refuse` (401 `SIGNATURE_INVALID`)."
        ),
    )
    webhook_dedupe_ttl: int = Field(
        default=86400,
        ge=1,
        le=30 * 86400,
        description=("Seconds a processed webhook id is remembered; at least twice the tolerance."),
    )
    message_trusted_keys: KeyMap = Field(
        default_factory=dict,
        description=(
            "Public keys trusted for signed messages: `key_id=base64,...` or a JSON object "
            "(values: base64 raw Ed25519 or PEM)."
        ),
    )
    message_signing_key: Annotated[SecretStr | None, MultiLine] = Field(
        default=None,
        description="This service's Ed25519 private key (PEM or base64 seed), to sign messages.",
    )
    message_key_id: str | None = Field(
        default=None,
        description="Key id peers trust this service's public key under.",
    )
    message_tolerance: int = Field(
        default=300,
        ge=1,
        le=3600,
        description="Seconds a message timestamp may differ from now, either way.",
    )
    message_max_body_bytes: int = Field(
        default=256 * 1024,
        ge=1,
        le=64 * 1024 * 1024,
        description="Largest signed-message body read (413 beyond).",
    )
    replay_key_prefix: str = Field(
        default="hardenkit:replay:",
        min_length=1,
        description="Prefix of the Redis keys holding webhook ids and message nonces.",
    )
    replay_max_memory_entries: int = Field(
        default=100_000,
        ge=1,
        le=10_000_000,
        description="Ids the in-memory replay store holds (oldest evicted first).",
    )
    replay_redis_down: Literal["fallback", "closed"] = Field(
        default="fallback",
        description=(
            "While Redis is unavailable: `fallback` remembers webhook ids and message "
            "nonces per process (another instance may process a redelivery again), "
            "`closed` answers 503 with `Retry-After` and reports the replay store "
            "unhealthy. Use `closed` in production with more than one instance."
        ),
    )

    @field_validator("message_trusted_keys")
    @classmethod
    def _public_keys(cls, value: dict[str, str]) -> dict[str, str]:
        for key_id, key in value.items():
            if safe_key_id(key_id) is None:
                raise ValueError("key ids must be 1-128 characters of A-Z a-z 0-9 . _ : -")
            try:
                load_public_key(key)
            except ValueError as error:
                raise ValueError(f"key {key_id!r}: {error}") from None
        return value

    @field_validator("message_signing_key")
    @classmethod
    def _private_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            load_private_key(value.get_secret_value())
        return value

    @field_validator("message_key_id")
    @classmethod
    def _key_id(cls, value: str | None) -> str | None:
        if value is not None and safe_key_id(value) is None:
            raise ValueError("must be 1-128 characters of A-Z a-z 0-9 . _ : -")
        return value

    @field_validator("webhook_paths")
    @classmethod
    def _valid_webhook_paths(cls, value: list[str]) -> list[str]:
        PathPatterns(value)
        return value

    @property
    def verified_webhook_paths(self) -> list[str]:
        """The paths the webhook layer verifies: ``webhook_paths``, once a secret is set.

        ``install()`` adds the layer only then; the rate limits give these paths their
        webhook budget instead of the per-ip one.
        """
        return list(self.webhook_paths) if self.webhook_secret is not None else []

    def collect_problems(self) -> list[SettingProblem]:
        """Report signing rule violations."""
        problems = super().collect_problems()
        problems += self._webhook_problems()
        problems += self._message_problems()
        return problems

    def _webhook_problems(self) -> list[SettingProblem]:
        problems: list[SettingProblem] = []
        if self.webhook_secret is not None:
            try:
                keys = webhook_keys(self.webhook_secret.get_secret_value(), self.webhook_scheme)
            except ValueError as error:
                empty = not self.webhook_secret.get_secret_value().strip(" ,")
                problems.append(
                    SettingProblem(
                        "HARDENKIT_WEBHOOK_SECRET",
                        "is set but empty" if empty else str(error),
                        production_only=False,
                        # An empty variable is not an unset one: a user who set none met
                        # "at least one webhook secret is required" (a new-user review).
                        fix="set your provider's signing secret, or unset the variable "
                        "when the service receives no webhooks"
                        if empty
                        else None,
                    )
                )
            else:
                published = {
                    webhook_key(secret, self.webhook_scheme) for secret in PUBLISHED_WEBHOOK_SECRETS
                }
                if published.intersection(keys):
                    problems.append(
                        SettingProblem(
                            "HARDENKIT_WEBHOOK_SECRET",
                            "is a published demo or specification example secret",
                            fix="use the secret your webhook provider generated for you",
                        )
                    )
                else:
                    problems += self._weak_webhook_secrets()
        elif self.webhook_paths:
            problems.append(
                SettingProblem(
                    "HARDENKIT_WEBHOOK_SECRET",
                    "required when HARDENKIT_WEBHOOK_PATHS is set",
                    production_only=False,
                )
            )
        if self.webhook_dedupe_ttl < 2 * self.webhook_tolerance:
            problems.append(
                SettingProblem(
                    "HARDENKIT_WEBHOOK_DEDUPE_TTL",
                    "must be at least twice HARDENKIT_WEBHOOK_TOLERANCE, or a replay inside "
                    "the window is not recognised",
                    production_only=False,
                )
            )
        if (
            self.replay_redis_down == "fallback"
            and getattr(self, "redis_url", None) is not None
            and (self.webhook_paths or self.message_trusted_keys)
        ):
            problems.append(
                SettingProblem(
                    "HARDENKIT_REPLAY_REDIS_DOWN",
                    "`fallback` keeps webhook ids and nonces per process while Redis is "
                    "unavailable: with more than one instance a redelivery can be "
                    "processed twice; set `closed` (503, the sender retries)",
                    severity="warning",
                )
            )
        if self.webhook_tolerance > _LONG_WINDOW_SECONDS:
            problems.append(
                SettingProblem(
                    "HARDENKIT_WEBHOOK_TOLERANCE",
                    f"over {_LONG_WINDOW_SECONDS} s widens the replay window",
                    severity="warning",
                )
            )
        return problems

    def _weak_webhook_secrets(self) -> list[SettingProblem]:
        assert self.webhook_secret is not None  # noqa: S101 - checked by the caller
        problems = []
        secrets = [s for s in self.webhook_secret.get_secret_value().split(",") if s.strip()]
        for index, secret in enumerate(secrets):
            # Standard Webhooks keys are the decoded bytes; Stripe-style keys the text.
            material: str | bytes = secret.strip()
            if self.webhook_scheme == "standard":
                material = webhook_key(secret, "standard")
            weakness = secret_weakness(material)
            if weakness is not None:
                which = f"secret {index + 1} " if len(secrets) > 1 else ""
                problems.append(
                    SettingProblem(
                        "HARDENKIT_WEBHOOK_SECRET",
                        f"{which}{weakness}",
                        fix="use the secret your provider generated (or 32 bytes from "
                        "`secrets.token_bytes`)",
                    )
                )
        return problems

    def _message_problems(self) -> list[SettingProblem]:
        problems: list[SettingProblem] = []
        if (self.message_signing_key is None) != (self.message_key_id is None):
            problems.append(
                SettingProblem(
                    "HARDENKIT_MESSAGE_KEY_ID",
                    "HARDENKIT_MESSAGE_SIGNING_KEY and HARDENKIT_MESSAGE_KEY_ID are set together",
                    production_only=False,
                )
            )
        published_public = {public_key_text(load_public_key(key)) for key in PUBLISHED_PUBLIC_KEYS}
        if self.message_signing_key is not None:
            own = load_private_key(self.message_signing_key.get_secret_value())
            published = {public_key_text(load_private_key(key)) for key in PUBLISHED_PRIVATE_KEYS}
            if public_key_text(own) in published:
                problems.append(
                    SettingProblem(
                        "HARDENKIT_MESSAGE_SIGNING_KEY",
                        "is a published demo key",
                        fix="generate one with `hardenkit.signing.generate_private_key()`",
                    )
                )
            else:
                problems += _weak_seed_problems(own)
        trusted = {
            public_key_text(load_public_key(key)) for key in self.message_trusted_keys.values()
        }
        if trusted & published_public:
            problems.append(
                SettingProblem(
                    "HARDENKIT_MESSAGE_TRUSTED_KEYS",
                    "trusts a published demo key (anyone holds its private half)",
                    fix="trust only your peers' own public keys",
                )
            )
        if self.message_tolerance > _LONG_WINDOW_SECONDS:
            problems.append(
                SettingProblem(
                    "HARDENKIT_MESSAGE_TOLERANCE",
                    f"over {_LONG_WINDOW_SECONDS} s widens the replay window",
                    severity="warning",
                )
            )
        return problems


def _weak_seed_problems(key: Any) -> list[SettingProblem]:
    seed = key.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    weakness = secret_weakness(seed)
    if weakness is None:
        return []
    return [
        SettingProblem(
            "HARDENKIT_MESSAGE_SIGNING_KEY",
            f"its seed {weakness}",
            fix="generate one with `hardenkit.signing.generate_private_key()`",
        )
    ]
