"""Secret strength: one judgement for every secret, random ones always pass."""

from __future__ import annotations

import base64
import hashlib
import random
import re
import secrets
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hardenkit import HardenSettings
from hardenkit._published import (
    DEMO_WEBHOOK_SECRET,
    PUBLISHED_PRIVATE_KEYS,
    PUBLISHED_WEBHOOK_KEYS,
    PUBLISHED_WEBHOOK_SECRETS,
)
from hardenkit._secrets import (
    _PUBLISHED_API_KEYS,
    MIN_SECRET_BITS,
    PUBLISHED_SECRETS,
    estimated_bits,
    published_api_key_hashes,
    secret_weakness,
)
from hardenkit.signing._secret import webhook_key


def secrets_token() -> str:
    return secrets.token_urlsafe(32)


@pytest.mark.parametrize(
    "secret",
    [
        "abcdefghijklmnopqrstuvwxyz0123456789",  # the alphabet, then the digits
        "your-256-bit-secret" * 2,  # jwt.io's placeholder, doubled to pass a length check
        "a" * 16,  # a Stripe-style webhook secret of 16 x a
        "a-string-secret-at-least-256-bits-long",  # jwt.io's newer placeholder
        "hardenkit-demo-jwt-secret-Qm8vT2xL5nR9wK3pZ7cY1hB4",  # the reference app's own
        "Qm8vT2xL-changeme-5nR9wK3pZ7cY1hB4Qm8vT2xL",  # a placeholder word inside
        "0123456789" * 5,  # a repeated run
        "zyxwvutsrqponmlkjihgfedcbaZYXWVUTSRQPONMLKJIHGFEDCBA",  # sequences down
        "acegikmoqsuwy13579bdfhjlnprtvx",  # progressions
        "k9Fw" * 12,  # a short random block repeated
        "short-Rx9",  # too short for 128 bits
    ],
)
def test_weak_and_published_secrets_are_refused(secret: str) -> None:
    reason = secret_weakness(secret)
    assert reason is not None
    assert secret not in reason


@pytest.mark.parametrize("key", [bytes(32), bytes(range(32)), b"\xff" * 24, b"ab" * 16])
def test_regular_binary_keys_are_refused(key: bytes) -> None:
    assert secret_weakness(key) is not None


def test_the_same_judgement_refuses_each_kind_of_secret_in_production() -> None:
    weak_text = "abcdefghijklmnopqrstuvwxyz0123456789"
    base: dict[str, Any] = {
        "env": "production",
        "jwt_issuer": "https://i.test",
        "jwt_audience": ["a"],
    }
    cases: dict[str, dict[str, Any]] = {
        "HARDENKIT_JWT_SECRET": {"jwt_secret": weak_text},
        "HARDENKIT_WEBHOOK_SECRET": {
            "jwt_secret": "qE7vN2pXcL9tRw4ZbH6mKd1YsJ8uFg3AoT5iVy0",
            "webhook_secret": "whsec_" + base64.b64encode(bytes(range(32))).decode(),
        },
        "HARDENKIT_MESSAGE_SIGNING_KEY": {
            "jwt_secret": "qE7vN2pXcL9tRw4ZbH6mKd1YsJ8uFg3AoT5iVy0",
            "message_signing_key": base64.b64encode(bytes(32)).decode(),
            "message_key_id": "svc",
        },
        "HARDENKIT_API_KEYS": {
            "jwt_secret": "qE7vN2pXcL9tRw4ZbH6mKd1YsJ8uFg3AoT5iVy0",
            "api_keys": ["ops:" + hashlib.sha256(b"your-api-key").hexdigest()],
        },
    }
    for variable, values in cases.items():
        errors = HardenSettings(**base, **values).startup_errors()
        assert variable in {problem.setting for problem in errors}, variable


def test_a_rotation_names_which_webhook_secret_is_weak() -> None:
    strong = "whsec_" + base64.b64encode(random.Random(7).randbytes(32)).decode()
    weak = "whsec_" + base64.b64encode(bytes(32)).decode()
    settings_ = HardenSettings(env="production", webhook_secret=f"{strong},{weak}")
    messages = [p.message for p in settings_.problems() if p.setting == "HARDENKIT_WEBHOOK_SECRET"]
    assert any(message.startswith("secret 2 ") for message in messages)
    assert not any(message.startswith("secret 1 ") for message in messages)


def test_the_published_webhook_keys_are_what_the_webhook_verifier_decodes() -> None:
    assert (
        tuple(webhook_key(secret, "standard") for secret in PUBLISHED_WEBHOOK_SECRETS)
        == PUBLISHED_WEBHOOK_KEYS
    )


def test_the_published_demo_webhook_secret_is_refused_by_key_bytes() -> None:
    key = base64.b64decode(DEMO_WEBHOOK_SECRET.removeprefix("whsec_"))
    assert secret_weakness(key) is not None


@settings(max_examples=300, deadline=None)
@given(st.randoms(use_true_random=True), st.sampled_from(["hex", "base64", "urlsafe", "raw"]))
def test_random_32_byte_secrets_always_pass(rng: random.Random, form: str) -> None:
    key = rng.randbytes(32)
    forms: dict[str, str | bytes] = {
        "hex": key.hex(),
        "base64": base64.b64encode(key).decode(),
        "urlsafe": base64.urlsafe_b64encode(key).decode().rstrip("="),
        "raw": key,
    }
    secret = forms[form]
    assert secret_weakness(secret) is None
    assert estimated_bits(secret) >= MIN_SECRET_BITS


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=0, max_size=200))
def test_the_judgement_never_raises_and_never_repeats_the_secret(secret: str) -> None:
    reason = secret_weakness(secret)
    # (Shorter secrets may be words of the reason itself: "placeholder", "demo".)
    if reason is not None and len(secret) >= 16:
        assert secret not in reason


# Secret-looking example values in the docs and the reference app: every one must be on
# the published list, so a new example cannot drift out of it.
_EXAMPLE_VALUES = re.compile(
    r"sk_(?:live|test)_[A-Za-z0-9]+"
    r"|whsec_[A-Za-z0-9+/]{16,}={0,2}"
    r"|demo-key-[A-Za-z0-9]+"
    r"|hardenkit-demo-[A-Za-z0-9-]+"
    r"|\"(?:jwt_secret|webhook_secret|message_signing_key)\": \"([^\"]+)\""
)
ROOT = Path(__file__).resolve().parent.parent


def test_every_example_secret_in_the_docs_and_examples_is_on_the_published_list() -> None:
    files = [ROOT / "README.md", *ROOT.glob("docs/**/*.md"), *ROOT.glob("examples/**/*.*")]
    found = {
        match.group(1) or match.group()
        for path in files
        if path.suffix in {".md", ".py", ".toml", ".env", ".txt", ".yaml", ".yml"}
        for match in _EXAMPLE_VALUES.finditer(path.read_text())
    }
    assert {"sk_live_51H8FAKEFAKEFAKE", "demo-key-9f8e7d6c5b4a"} <= found  # the grep works
    published = {*PUBLISHED_SECRETS, *_PUBLISHED_API_KEYS, *PUBLISHED_PRIVATE_KEYS}
    assert found - published == set()


@pytest.mark.parametrize(
    "secret",
    [
        # Keyboard walks, by row and by column.
        "1qaz2wsx3edc4rfv5tgb6yhn7ujm8ik9ol0p",
        "zaq12wsxcde34rfvbgt56yhnmju78ik,lo9.;p0",
        "qazwsxedcrfvtgbyhnujmikolpQAZWSXEDCRFV",
        "qwertyuiopasdfghjklzxcvbnm1234567890QWERTYUIOP",
        # Phrases: words are worth about 2 bits a letter, not 5-6.
        "thequickbrownfoxjumpsoverthelazydog",
        "mysupersecretjwtkeyforproductionuse",
        "ThisIsMyVerySecretJwtSigningKeyForProd2024!",
        "correct-horse-battery-staple-is-my-jwt-key",
        "lorem ipsum dolor sit amet consectetur adipiscing",
        "the_service_signing_secret_for_orders_in_production",
        # Encodings of weak text are judged by the text.
        "c3VwZXJzZWNyZXRwYXNzd29yZDEyMyEh",
        base64.urlsafe_b64encode(b"changeme-changeme-changeme").decode().rstrip("="),
        b"correct horse battery staple".hex(),
        # Hex digests of common passwords.
        hashlib.sha256(b"password").hexdigest(),
        hashlib.sha256(b"secret").hexdigest().upper(),
        hashlib.sha1(b"123456").hexdigest(),  # noqa: S324 - the digest people paste
        hashlib.md5(b"admin").hexdigest(),  # noqa: S324
        hashlib.sha512(b"qwerty").hexdigest(),
        # Placeholders with other separators, case, or one character changed.
        "YOUR_256_BIT_SECRET_FOR_PROD_Qm8vT2xL5nR9wK3p",
        "your 256 bit secret Qm8vT2xL5nR9wK3pZ7cY1hB4",
        "a-string-secret-at-least-256-bits-lonq",
        "a_string_secret_at_least_256_bits_long",
        "Qm8vT2xL5nR9wK3p-Change_Me-Z7cY1hB4Qm8vT2xL",
        "my-secret-key-at-least-256-bits-long-ok",
        "replace-with-a-long-random-string-in-production",
        "sk_test_4eC39HqLyjWDarjtT1zdp7dc",
        "sk_test_4eC39HqLyjWDarjtT1zdp7dX",
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSx",
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS",
    ],
)
def test_walks_phrases_encodings_digests_and_placeholder_variants_are_refused(
    secret: str,
) -> None:
    reason = secret_weakness(secret)
    assert reason is not None
    assert secret.lower() not in reason.lower()


def test_the_standard_webhooks_example_key_with_one_character_changed_is_refused() -> None:
    key = webhook_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSx", "standard")
    assert secret_weakness(key) is not None
    settings_ = HardenSettings(
        env="production", webhook_secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSx"
    )
    assert "HARDENKIT_WEBHOOK_SECRET" in {p.setting for p in settings_.startup_errors()}


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "123456",
        "api_key",
        "YOUR_API_KEY",
        "your-api-key",
        "",
        "demo-key-9f8e7d6c5b4a",
        "sk_live_51H8FAKEFAKEFAKE",
    ],
)
def test_the_hash_of_a_placeholder_or_common_api_key_is_published(key: str) -> None:
    assert hashlib.sha256(key.encode()).hexdigest() in published_api_key_hashes()


@pytest.mark.parametrize(
    "secret",
    [
        # Random, but with words or walks an estimate might over-punish.
        "qE7vN2pXcL9tRw4ZbH6mKd1YsJ8uFg3AoT5iVy0",
        "orders-" + secrets_token(),
        secrets_token() + "-production",
    ],
    # Named, not shown: two are generated, and pytest -n needs the same ids everywhere.
    ids=["fixed", "word-prefix", "word-suffix"],
)
def test_random_secrets_with_a_readable_prefix_or_suffix_still_pass(secret: str) -> None:
    assert secret_weakness(secret) is None
