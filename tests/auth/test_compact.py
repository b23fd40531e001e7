"""The compact-JWS parser on open-ended input: it refuses or parses, never crashes."""

from __future__ import annotations

import base64

from hypothesis import given, settings
from hypothesis import strategies as st

from hardenkit.auth import TokenRejectedError
from hardenkit.auth._compact import b64url_decode, json_object, split_token


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_are_parsed_or_refused_with_token_rejected(data: bytes) -> None:
    reason = None
    try:
        header, payload, signature = split_token(data)
        json_object(b64url_decode(header))
        b64url_decode(payload)
        b64url_decode(signature)
    except TokenRejectedError as rejected:
        reason = rejected.reason
    assert reason in {None, "malformed", "jwe_refused"}


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_base64url_round_trips_exactly_the_canonical_encoding(data: bytes) -> None:
    encoded = base64.urlsafe_b64encode(data).rstrip(b"=")
    assert b64url_decode(encoded) == data


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.none() | st.integers() | st.text(max_size=5),
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
        ),
        max_leaves=30,
    )
)
def test_json_values_are_objects_or_refused(value: object) -> None:
    import json

    data = json.dumps(value).encode()
    try:
        parsed = json_object(data)
    except TokenRejectedError:
        return
    assert isinstance(parsed, dict)
    assert parsed == value


def test_padding_is_refused() -> None:
    for segment in (b"YQ==", b"YWI=", b"YQ=", b"Y"):
        try:
            b64url_decode(segment)
        except TokenRejectedError:
            continue
        raise AssertionError(segment)
