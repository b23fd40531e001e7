"""Signed messages: Ed25519 over canonical JSON, trusted keys by id only, window, nonces."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import given, settings
from hypothesis import strategies as st

from hardenkit import ReplayStore, sign_message, verify_message
from hardenkit.signing import (
    MessageVerifier,
    SignatureError,
    canonical_json,
    generate_private_key,
    load_private_key,
    load_public_key,
    private_key_text,
    public_key_text,
)
from hardenkit.signing.messages import signed_content
from tests.signing.conftest import Refusals

NOW = 1_767_225_600
AGENT = generate_private_key()
STRANGER = generate_private_key()
TRUSTED = {"billing-agent": public_key_text(AGENT)}
PAYLOAD = {"action": "refund", "amount": 4200, "currency": "EUR", "note": "café"}


async def refused(
    message: Any, *, store: ReplayStore | None = None, **kwargs: Any
) -> SignatureError:
    with pytest.raises(SignatureError) as caught:
        await verify_message(message, TRUSTED, replay_store=store, now=NOW, **kwargs)
    return caught.value


async def test_a_message_signed_by_a_trusted_key_is_accepted() -> None:
    message = sign_message(PAYLOAD, AGENT, key_id="billing-agent", timestamp=NOW)
    verified = await verify_message(message, TRUSTED, replay_store=ReplayStore(), now=NOW)
    assert verified.payload == PAYLOAD
    assert verified.key_id == "billing-agent"
    assert verified.timestamp == NOW


async def test_a_message_survives_the_wire_as_json_bytes() -> None:
    message = sign_message(PAYLOAD, AGENT, key_id="billing-agent", timestamp=NOW)
    wire = json.dumps(message, indent=2).encode()  # whitespace and order do not matter
    verified = await verify_message(wire, TRUSTED, replay_store=None, now=NOW)
    assert verified.payload == PAYLOAD


async def test_the_signature_covers_canonical_json_of_payload_timestamp_nonce_and_key_id() -> None:
    message = sign_message(PAYLOAD, AGENT, key_id="billing-agent", timestamp=NOW, nonce="n" * 22)
    expected = (
        '{"key_id":"billing-agent","nonce":"nnnnnnnnnnnnnnnnnnnnnn","payload":{"action":"refund",'
        '"amount":4200,"currency":"EUR","note":"café"},"timestamp":1767225600,"v":1}'
    ).encode()
    assert (
        signed_content(PAYLOAD, key_id="billing-agent", timestamp=NOW, nonce="n" * 22) == expected
    )
    signature = base64.urlsafe_b64decode(message["signature"] + "==")
    AGENT.public_key().verify(signature, expected)  # raises if it does not verify


async def test_a_message_signed_by_an_untrusted_key_is_refused(refusals: Refusals) -> None:
    message = sign_message(PAYLOAD, STRANGER, key_id="stranger", timestamp=NOW)
    error = await refused(message)
    assert (error.status, error.code, error.reason) == (401, "SIGNATURE_INVALID", "untrusted_key")
    assert refusals.events[0]["details"] == {"kind": "message", "key_id": "stranger"}
    assert refusals.metric == [(1, {"kind": "message", "reason": "untrusted_key"})]


async def test_a_stranger_claiming_a_trusted_key_id_is_refused() -> None:
    message = sign_message(PAYLOAD, STRANGER, key_id="billing-agent", timestamp=NOW)
    error = await refused(message)
    assert (error.status, error.reason) == (401, "signature_mismatch")


@pytest.mark.parametrize("member", ["public_key", "jwk", "x5c"])
async def test_a_message_carrying_its_own_public_key_is_refused(member: str) -> None:
    message = sign_message(PAYLOAD, STRANGER, key_id="billing-agent", timestamp=NOW)
    message[member] = public_key_text(STRANGER)
    error = await refused(message)
    assert (error.status, error.code, error.reason) == (
        400,
        "SIGNATURE_INVALID",
        "unexpected_fields",
    )


async def test_a_public_key_inside_the_payload_is_never_used() -> None:
    payload = {"public_key": public_key_text(STRANGER), "action": "refund"}
    message = sign_message(payload, STRANGER, key_id="billing-agent", timestamp=NOW)
    assert (await refused(message)).reason == "signature_mismatch"


async def test_a_changed_payload_is_refused() -> None:
    message = sign_message(PAYLOAD, AGENT, key_id="billing-agent", timestamp=NOW)
    message["payload"] = {**PAYLOAD, "amount": 4201}
    assert (await refused(message)).reason == "signature_mismatch"


@pytest.mark.parametrize(
    ("offset", "reason"), [(-301, "timestamp_too_old"), (301, "timestamp_in_future")]
)
async def test_a_message_outside_the_window_is_refused_as_expired(offset: int, reason: str) -> None:
    message = sign_message(PAYLOAD, AGENT, key_id="billing-agent", timestamp=NOW + offset)
    error = await refused(message)
    assert (error.status, error.code, error.reason) == (401, "SIGNATURE_EXPIRED", reason)


async def test_a_replayed_nonce_is_refused(refusals: Refusals) -> None:
    store = ReplayStore()
    message = sign_message(PAYLOAD, AGENT, key_id="billing-agent", timestamp=NOW)
    await verify_message(message, TRUSTED, replay_store=store, now=NOW)
    error = await refused(message, store=store)
    assert (error.status, error.code, error.reason) == (401, "SIGNATURE_INVALID", "replayed")
    assert refusals.reasons == ["replayed"]


async def test_a_forged_message_does_not_use_up_a_nonce() -> None:
    store = ReplayStore()
    message = sign_message(PAYLOAD, AGENT, key_id="billing-agent", timestamp=NOW)
    forged = {
        **message,
        "signature": sign_message(
            PAYLOAD, STRANGER, key_id="billing-agent", timestamp=NOW, nonce=message["nonce"]
        )["signature"],
    }
    assert (await refused(forged, store=store)).reason == "signature_mismatch"
    assert await verify_message(message, TRUSTED, replay_store=store, now=NOW)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"v": 2}, "unsupported_version"),
        ({"v": True}, "unsupported_version"),
        ({"key_id": "has space"}, "malformed_key_id"),
        ({"key_id": 7}, "malformed_key_id"),
        ({"timestamp": "1767225600"}, "malformed_timestamp"),
        ({"timestamp": 1.5}, "malformed_timestamp"),
        ({"nonce": "short"}, "malformed_nonce"),
        ({"signature": "AAAA"}, "malformed_signature"),
    ],
)
async def test_malformed_members_are_bad_requests(change: dict[str, Any], reason: str) -> None:
    message = sign_message(PAYLOAD, AGENT, key_id="billing-agent", timestamp=NOW)
    error = await refused({**message, **change})
    assert (error.status, error.code, error.reason) == (400, "SIGNATURE_INVALID", reason)


@pytest.mark.parametrize("raw", [b"not json", b"[1,2]", b"\xff\xfe", b"[" * 100_000, b"{}"])
async def test_garbage_is_a_bad_request_never_a_crash(raw: bytes) -> None:
    error = await refused(raw)
    assert error.status == 400


def test_canonical_json_refuses_what_it_cannot_encode_unambiguously() -> None:
    assert canonical_json({"b": 1, "a": [1.5, "é"]}) == '{"a":[1.5,"é"],"b":1}'.encode()
    for value in [float("nan"), {"x": float("inf")}, {1: "a", "1": "b"}, object(), "\ud800"]:
        with pytest.raises(ValueError, match="canonical"):
            canonical_json(value)


def test_keys_load_from_pem_and_from_raw_base64_in_either_alphabet() -> None:
    key = generate_private_key()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public_pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    seed = private_key_text(key)
    for text in (pem, seed, seed.replace("+", "-").replace("/", "_").rstrip("=")):
        assert public_key_text(load_private_key(text)) == public_key_text(key)
    for text in (public_pem, public_key_text(key)):
        assert public_key_text(load_public_key(text)) == public_key_text(key)


@pytest.mark.parametrize("text", ["", "not a key", "QUJD", "-----BEGIN PRIVATE KEY-----\nxx\n"])
def test_unusable_keys_are_refused_without_echoing_them(text: str) -> None:
    with pytest.raises(ValueError) as caught:
        load_private_key(text)
    if text:
        assert text not in str(caught.value)
    with pytest.raises(ValueError):
        load_public_key(text)


def test_a_verifier_refuses_a_trusted_key_it_cannot_load() -> None:
    with pytest.raises(ValueError, match="trusted key 'agent'"):
        MessageVerifier({"agent": "garbage"}, replay_store=None)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.text()
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=100, deadline=None)
@given(json_values)
def test_any_json_payload_round_trips_through_sign_and_verify(payload: Any) -> None:
    import asyncio

    message = sign_message(payload, AGENT, key_id="billing-agent", timestamp=NOW)
    wire = json.dumps(message)
    verified = asyncio.run(verify_message(wire, TRUSTED, replay_store=None, now=NOW))
    assert canonical_json(verified.payload) == canonical_json(payload)


envelope_values = st.none() | st.booleans() | st.integers() | st.text(max_size=100) | st.floats()


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["v", "key_id", "timestamp", "nonce", "payload", "signature", "jwk"]),
        envelope_values,
    )
)
async def test_any_forged_envelope_is_refused_with_a_coded_4xx_never_a_crash(
    envelope: dict[str, Any],
) -> None:
    with pytest.raises(SignatureError) as caught:
        await verify_message(envelope, TRUSTED, replay_store=None, now=NOW)
    assert caught.value.status in {400, 401}
