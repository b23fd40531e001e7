"""Signature header parsers: bounded, and only ever a HeaderError on bad input."""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hardenkit.signing._headers import (
    DEFAULT_MAX_SIGNATURES,
    HeaderError,
    parse_standard_signature_header,
    parse_stripe_signature_header,
    parse_timestamp,
)

DIGEST = hashlib.sha256(b"x").digest()


def test_stripe_header_yields_timestamp_and_every_v1_digest() -> None:
    other = hashlib.sha256(b"y").digest()
    header = f"t=1492774577,v1={DIGEST.hex()},v0={other.hex()},v1={other.hex()}"
    parsed = parse_stripe_signature_header(header)
    assert parsed.timestamp == 1492774577
    assert parsed.timestamp_text == "1492774577"
    assert parsed.signatures == (DIGEST, other)


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ("", "malformed_signature_header"),
        (f"v1={DIGEST.hex()}", "malformed_signature_header"),
        (f"t=1,t=2,v1={DIGEST.hex()}", "malformed_signature_header"),
        (f"t=-1,v1={DIGEST.hex()}", "malformed_timestamp"),
        (f"t=1e9,v1={DIGEST.hex()}", "malformed_timestamp"),
        (f"t=1_000,v1={DIGEST.hex()}", "malformed_timestamp"),
        ("t=1", "no_v1_signature"),
        ("t=1,v1=nothex", "no_v1_signature"),
        (f"t=1,v0={DIGEST.hex()}", "no_v1_signature"),
    ],
)
def test_malformed_stripe_headers_are_refused_with_a_reason(header: str, reason: str) -> None:
    with pytest.raises(HeaderError) as caught:
        parse_stripe_signature_header(header)
    assert caught.value.reason == reason


def test_a_stripe_header_with_a_thousand_v1_entries_is_refused_before_any_is_used() -> None:
    header = "t=1," + ",".join(f"v1={DIGEST.hex()}" for _ in range(1000))
    with pytest.raises(HeaderError) as caught:
        parse_stripe_signature_header(header)
    assert caught.value.reason == "signature_header_too_large"
    # Under a generous byte limit the entry count still bounds the work.
    with pytest.raises(HeaderError) as caught:
        parse_stripe_signature_header(header, max_bytes=1_000_000)
    assert caught.value.reason == "too_many_signatures"


def test_standard_header_keeps_v1_entries_and_skips_other_versions() -> None:
    encoded = base64.b64encode(DIGEST).decode()
    header = f"v1a,{encoded} v1,{encoded} v2,{encoded} v1,not-base64"
    assert parse_standard_signature_header(header) == (DIGEST,)


def test_a_standard_header_with_too_many_entries_is_refused() -> None:
    entry = "v1," + base64.b64encode(DIGEST).decode()
    header = " ".join([entry] * (DEFAULT_MAX_SIGNATURES + 1))
    with pytest.raises(HeaderError) as caught:
        parse_standard_signature_header(header, max_bytes=1_000_000)
    assert caught.value.reason == "too_many_signatures"


def test_timestamps_are_ascii_digits_only() -> None:
    assert parse_timestamp("1614265330") == 1614265330
    for bad in ["", " 1", "+1", "\uff11\uff12", "1.5", "9" * 13]:
        with pytest.raises(HeaderError):
            parse_timestamp(bad)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=600))
def test_stripe_parser_raises_only_header_errors_and_bounds_its_output(header: str) -> None:
    try:
        parsed = parse_stripe_signature_header(header, max_signatures=4, max_bytes=400)
    except HeaderError as error:
        reason = error.reason
        assert reason
        return
    assert len(parsed.signatures) <= 4
    assert all(len(signature) == 32 for signature in parsed.signatures)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=600))
def test_standard_parser_raises_only_header_errors_and_bounds_its_output(header: str) -> None:
    try:
        signatures = parse_standard_signature_header(header, max_signatures=4, max_bytes=400)
    except HeaderError as error:
        reason = error.reason
        assert reason
        return
    assert 1 <= len(signatures) <= 4
    assert all(len(signature) == 32 for signature in signatures)


@settings(max_examples=200, deadline=None)
@given(
    st.integers(min_value=0, max_value=10**12 - 1),
    st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=DEFAULT_MAX_SIGNATURES),
)
def test_stripe_parser_round_trips_what_a_sender_writes(
    timestamp: int, digests: list[bytes]
) -> None:
    header = ",".join([f"t={timestamp}", *(f"v1={digest.hex()}" for digest in digests)])
    parsed = parse_stripe_signature_header(header, max_bytes=100_000)
    assert parsed.timestamp == timestamp
    assert parsed.signatures == tuple(digests)
