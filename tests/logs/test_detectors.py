"""The value detectors, one behaviour at a time."""

from __future__ import annotations

import base64
import random
import string

import pytest

from hardenkit.logs import Redactor
from hardenkit.logs._detectors import luhn_valid


def scan(text: str) -> str:
    return Redactor().redact_text(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("paid with 4111 1111 1111 1111 today", "paid with [REDACTED:card:1111] today"),
        ("card 5555-5555-5555-4444", "card [REDACTED:card:4444]"),
        ("amex 378282246310005.", "amex [REDACTED:card:0005]."),
        ("order 12 4111 1111 1111 1111", "order 12 [REDACTED:card:1111]"),
    ],
)
def test_luhn_valid_card_numbers_are_redacted_keeping_the_last_four(
    text: str, expected: str
) -> None:
    assert scan(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "4111 1111 1111 1112",  # fails Luhn
        "ts=1714566645123",  # epoch milliseconds: no issuer starts with 1
        "12345678901234567890123",  # longer than any card
        "call +1 415 555 0100",
    ],
)
def test_numbers_that_are_not_cards_are_kept(text: str) -> None:
    assert scan(text) == text


def test_luhn_checksum() -> None:
    assert luhn_valid("79927398713")
    assert not luhn_valid("79927398710")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Bearer abc.DEF-123_456", "Authorization: [REDACTED]"),
        ("sent bearer abcDEF123456 upstream", "sent bearer [REDACTED] upstream"),
        ("Basic YWRhOmh1bnRlcjI=", "Basic [REDACTED]"),
        ("Bearer authentication is required", "Bearer authentication is required"),
        ("Basic authorization failed", "Basic authorization failed"),
    ],
)
def test_bearer_and_basic_credentials_but_not_english(text: str, expected: str) -> None:
    assert scan(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("GET /x?token=abc&page=2", "GET /x?token=[REDACTED]&page=2"),
        ("api_key=abc123;next", "api_key=[REDACTED];next"),
        ("?sig=a1b2&se=2024", "?sig=[REDACTED]&se=2024"),
        ("key=AIza0000&q=shoes", "key=[REDACTED]&q=shoes"),
        ("q=blue+shoes&sort=price", "q=blue+shoes&sort=price"),
        ('{"password": "hunter2", "user": "ada"}', '{"password": "[REDACTED]", "user": "ada"}'),
        ("{'clientSecret': 'abc', 'id': 1}", "{'clientSecret': '[REDACTED]', 'id': 1}"),
        ("password: hunter2", "password: [REDACTED]"),
        ("X-Api-Key: k-1 2 3\nAccept: */*", "X-Api-Key: [REDACTED]\nAccept: */*"),
        ("Cookie: a=1; sid=2", "Cookie: [REDACTED]"),
        ("token: expired", "token: expired"),
    ],
)
def test_name_value_pairs_inside_text_follow_the_name_rules(text: str, expected: str) -> None:
    assert scan(text) == expected


def test_url_userinfo_is_removed_whole() -> None:
    assert scan("redis://:s3cret@cache:6379/0") == "redis://[REDACTED]@cache:6379/0"
    assert scan("see https://example.com/@handle") == "see https://example.com/@handle"


def test_a_token_inside_a_url_path_is_found_in_its_segment() -> None:
    token = "glpat-" + "aB3" * 7
    assert scan(f"https://x.example/v1/hooks/{token}/deliver") == (
        "https://x.example/v1/hooks/[REDACTED:api_key]/deliver"
    )


def test_random_blobs_are_redacted_in_nearly_every_case() -> None:
    rng = random.Random(7)
    alphabet = string.ascii_letters + string.digits
    blobs = [base64.b64encode(rng.randbytes(30)).decode() for _ in range(200)]
    blobs += ["".join(rng.choice(alphabet) for _ in range(32)) for _ in range(200)]
    missed = [blob for blob in blobs if blob in scan(f"value {blob} end")]
    # The generic detector is statistical; vendor formats and names are the exact rules.
    assert len(missed) <= len(blobs) // 100


@pytest.mark.parametrize(
    "text",
    [
        "ServiceUnavailableExceptionHandler",
        "RequestMetricsMiddlewareConfiguration",
        "test_spoofed_forwarded_for_from_untrusted_peer_is_ignored",
        "checkout-service-7d9f8b6c5d-x2x9z",
        "req-2024-05-01-checkout-7f3a",
        "/api/v1/organisations/42/members/17/permissions",
        "507f1f77bcf86cd799439011",
        "123e4567-e89b-12d3-a456-426614174000",
    ],
)
def test_identifiers_paths_and_ids_are_not_mistaken_for_random_blobs(text: str) -> None:
    assert scan(text) == text


def test_a_base64_key_whose_slashes_make_it_read_as_a_path_is_redacted() -> None:
    """The leak hunt drew a 32-byte key whose base64 began "/221/": split at its "/",
    most segments were short or numbers, so it read as a path and was kept whole."""
    key = "/221/dQF717dawkBoWtBcbMySL5P/V5jWG8gnMOjfDk="
    assert key not in str(Redactor().redact({"payload": key, "note": f"key {key} set"}))
    for path in ("/api/v1/orders/42/items", "/static/css/main.css", "/v1/tenants/acme/==="):
        assert Redactor().redact({"payload": path}) == {"payload": path}
