"""Secret strength: one judgement for every secret, random ones always pass."""

from __future__ import annotations

import base64
import hashlib
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hardenkit import HardenSettings
from hardenkit._secrets import MIN_SECRET_BITS, estimated_bits, secret_weakness
from hardenkit.signing._published import DEMO_WEBHOOK_SECRET


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
