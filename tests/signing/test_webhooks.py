"""Webhook signatures: both formats, rotation, tolerance, limits, refusals with codes."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hardenkit import sign_webhook, verify_webhook
from hardenkit.errors import ErrorCode
from hardenkit.signing import SignatureError, WebhookVerifier
from hardenkit.signing._secret import encode_standard_secret
from tests.signing.conftest import Refusals

# The published test vector of Standard Webhooks: standard-webhooks/standard-webhooks,
# libraries/python/tests/test_webhooks.py, test_sign_function (commit 33d368b2); the same
# secret, id, timestamp and payload are the DEFAULT_* fixtures of every library's tests.
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TIMESTAMP = 1614265330
VECTOR_PAYLOAD = b'{"test": 2432232314}'
VECTOR_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

SECRET = encode_standard_secret(hashlib.sha256(b"current").digest())
OLD_SECRET = encode_standard_secret(hashlib.sha256(b"previous").digest())
RETIRED_SECRET = encode_standard_secret(hashlib.sha256(b"retired").digest())
STRIPE_SECRET = "whsec_stripe_style_endpoint_secret_0123"
NOW = 1_767_225_600
BODY = b'{"type":"invoice.paid","data":{"id":"in_1","amount":4200}}'


def vector_headers() -> dict[str, str]:
    return {
        "webhook-id": VECTOR_ID,
        "webhook-timestamp": str(VECTOR_TIMESTAMP),
        "webhook-signature": VECTOR_SIGNATURE,
    }


def refused(call: object, *args: object, **kwargs: object) -> SignatureError:
    with pytest.raises(SignatureError) as caught:
        call(*args, **kwargs)  # type: ignore[operator]
    return caught.value


def test_standard_webhooks_published_vector_verifies() -> None:
    verified = verify_webhook(VECTOR_PAYLOAD, vector_headers(), VECTOR_SECRET, now=VECTOR_TIMESTAMP)
    assert verified.id == VECTOR_ID
    assert verified.timestamp == VECTOR_TIMESTAMP
    assert verified.body == VECTOR_PAYLOAD


def test_signing_the_published_vector_gives_the_published_signature() -> None:
    headers = sign_webhook(
        VECTOR_PAYLOAD, VECTOR_SECRET, webhook_id=VECTOR_ID, timestamp=VECTOR_TIMESTAMP
    )
    assert headers == vector_headers()


def test_the_vector_secret_without_its_prefix_is_the_same_key() -> None:
    secret = VECTOR_SECRET.removeprefix("whsec_")
    assert verify_webhook(VECTOR_PAYLOAD, vector_headers(), secret, now=VECTOR_TIMESTAMP)


def test_stripe_style_verifies_a_signature_computed_as_stripe_documents() -> None:
    # https://docs.stripe.com/webhooks#verify-manually: signed_payload is the timestamp,
    # ".", and the raw JSON body; the signature is HMAC-SHA256 of it keyed with the
    # endpoint's signing secret, in hex (stripe-python: WebhookSignature._compute_signature).
    payload = BODY.decode()
    signed_payload = f"{NOW}.{payload}"
    signature = hmac.new(
        STRIPE_SECRET.encode("utf-8"), signed_payload.encode("utf-8"), hashlib.sha256
    ).hexdigest()
    header = f"t={NOW},v1={signature}"
    verified = verify_webhook(
        BODY, {"Stripe-Signature": header}, STRIPE_SECRET, scheme="stripe", now=NOW
    )
    assert verified.timestamp == NOW
    assert verified.id is None  # this body has no top-level "id"


def test_stripe_style_takes_the_event_id_from_the_body() -> None:
    body = json.dumps({"id": "evt_1", "object": "event"}).encode()
    headers = sign_webhook(body, STRIPE_SECRET, scheme="stripe", timestamp=NOW)
    verified = verify_webhook(body, headers, STRIPE_SECRET, scheme="stripe", now=NOW)
    assert verified.id == "evt_1"
    assert verified.dedupe_key == "stripe:id:evt_1"


def test_header_names_are_matched_case_insensitively() -> None:
    headers = {name.upper(): value for name, value in vector_headers().items()}
    assert verify_webhook(VECTOR_PAYLOAD, headers, VECTOR_SECRET, now=VECTOR_TIMESTAMP)


@pytest.mark.parametrize("scheme", ["standard", "stripe"])
def test_a_body_changed_by_one_byte_is_refused(scheme: str, refusals: Refusals) -> None:
    secret = SECRET if scheme == "standard" else STRIPE_SECRET
    headers = sign_webhook(BODY, secret, scheme=scheme, timestamp=NOW)  # type: ignore[arg-type]
    tampered = BODY.replace(b"4200", b"4201")
    error = refused(verify_webhook, tampered, headers, secret, scheme=scheme, now=NOW)
    assert (error.status, error.code, error.reason) == (
        401,
        "SIGNATURE_INVALID",
        "signature_mismatch",
    )
    assert refusals.reasons == ["signature_mismatch"]
    assert refusals.metric == [(1, {"kind": "webhook", "reason": "signature_mismatch"})]


@pytest.mark.parametrize(
    ("offset", "reason"), [(-301, "timestamp_too_old"), (301, "timestamp_in_future")]
)
def test_a_timestamp_outside_the_tolerance_is_refused_as_expired(
    offset: int, reason: str, refusals: Refusals
) -> None:
    headers = sign_webhook(BODY, SECRET, timestamp=NOW + offset)
    error = refused(verify_webhook, BODY, headers, SECRET, now=NOW)
    assert (error.status, error.code, error.reason) == (401, ErrorCode.SIGNATURE_EXPIRED, reason)
    assert refusals.reasons == [reason]


@pytest.mark.parametrize("offset", [-300, 0, 300])
def test_a_timestamp_inside_the_tolerance_is_accepted(offset: int) -> None:
    headers = sign_webhook(BODY, SECRET, timestamp=NOW + offset)
    assert verify_webhook(BODY, headers, SECRET, now=NOW).timestamp == NOW + offset


def test_expiry_is_only_reported_for_authentic_deliveries() -> None:
    headers = sign_webhook(BODY, RETIRED_SECRET, timestamp=NOW - 3600)
    assert refused(verify_webhook, BODY, headers, SECRET, now=NOW).reason == "signature_mismatch"


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_a_missing_header_is_refused_as_a_bad_request(missing: str, refusals: Refusals) -> None:
    headers = sign_webhook(BODY, SECRET, timestamp=NOW)
    del headers[missing]
    error = refused(verify_webhook, BODY, headers, SECRET, now=NOW)
    assert (error.status, error.code, error.reason) == (400, "SIGNATURE_INVALID", "missing_header")
    assert missing in (error.detail or "")
    assert refusals.events[0]["details"] == {"kind": "webhook", "key_id": None}


def test_a_missing_stripe_signature_header_is_refused() -> None:
    error = refused(verify_webhook, BODY, {}, STRIPE_SECRET, scheme="stripe", now=NOW)
    assert (error.status, error.reason) == (400, "missing_header")


def test_a_header_with_a_thousand_v1_entries_is_refused_with_bounded_work() -> None:
    good = sign_webhook(BODY, STRIPE_SECRET, scheme="stripe", timestamp=NOW)["Stripe-Signature"]
    flood = ",".join(["v1=" + "0" * 64] * 999)
    header = f"{good},{flood}"  # the valid signature is among them
    error = refused(
        verify_webhook, BODY, {"Stripe-Signature": header}, STRIPE_SECRET, scheme="stripe", now=NOW
    )
    assert (error.status, error.code, error.reason) == (
        400,
        "SIGNATURE_INVALID",
        "signature_header_too_large",
    )
    standard = sign_webhook(BODY, SECRET, timestamp=NOW)
    standard["webhook-signature"] = " ".join([standard["webhook-signature"]] * 1000)
    assert refused(verify_webhook, BODY, standard, SECRET, now=NOW).status == 400


def test_rotation_accepts_the_new_and_the_old_secret() -> None:
    rotating = f"{SECRET},{OLD_SECRET}"
    for signer in (SECRET, OLD_SECRET):
        headers = sign_webhook(BODY, signer, timestamp=NOW)
        assert verify_webhook(BODY, headers, rotating, now=NOW)


def test_a_signature_made_with_a_rotated_out_secret_is_refused(refusals: Refusals) -> None:
    headers = sign_webhook(BODY, RETIRED_SECRET, timestamp=NOW)
    error = refused(verify_webhook, BODY, headers, [SECRET, OLD_SECRET], now=NOW)
    assert (error.status, error.reason) == (401, "signature_mismatch")


def test_a_sender_in_rotation_lists_one_signature_per_secret_and_either_receiver_accepts() -> None:
    headers = sign_webhook(BODY, [SECRET, OLD_SECRET], timestamp=NOW)
    assert len(headers["webhook-signature"].split()) == 2
    assert verify_webhook(BODY, headers, OLD_SECRET, now=NOW)
    stripe = sign_webhook(
        BODY, [STRIPE_SECRET, STRIPE_SECRET + "x"], scheme="stripe", timestamp=NOW
    )
    assert stripe["Stripe-Signature"].count("v1=") == 2
    assert verify_webhook(BODY, stripe, STRIPE_SECRET + "x", scheme="stripe", now=NOW)


def test_a_body_over_the_limit_is_refused_before_it_is_hashed() -> None:
    headers = sign_webhook(BODY, SECRET, timestamp=NOW)
    error = refused(verify_webhook, BODY, headers, SECRET, now=NOW, max_body_bytes=10)
    assert (error.status, error.code, error.reason) == (413, "PAYLOAD_TOO_LARGE", "body_too_large")


def test_refusals_never_carry_the_signature_or_secret(refusals: Refusals) -> None:
    headers = sign_webhook(BODY, RETIRED_SECRET, timestamp=NOW)
    error = refused(verify_webhook, BODY, headers, SECRET, now=NOW)
    signature = headers["webhook-signature"].removeprefix("v1,")
    rendered = repr(refusals.logs) + str(error) + (error.detail or "")
    for secret_text in (signature, SECRET, SECRET.removeprefix("whsec_"), RETIRED_SECRET):
        assert secret_text not in rendered
    assert "whsec_" not in repr(WebhookVerifier(SECRET))


@pytest.mark.parametrize(
    "secret",
    ["", "whsec_", "whsec_not base64!", "whsec_" + "QUJD", b"short"],
)
def test_unusable_secrets_are_configuration_errors_that_omit_the_secret(
    secret: str | bytes,
) -> None:
    with pytest.raises(ValueError, match=r"secret|key") as caught:
        WebhookVerifier(secret)
    if isinstance(secret, str) and len(secret) > 6:
        assert secret.removeprefix("whsec_") not in str(caught.value)


def test_sign_webhook_refuses_an_id_containing_a_dot() -> None:
    with pytest.raises(ValueError, match="webhook_id"):
        sign_webhook(BODY, SECRET, webhook_id="msg.1")


header_text = st.text(st.characters(codec="latin-1"), max_size=300)


@settings(max_examples=200, deadline=None)
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "webhook-id": header_text,
            "webhook-timestamp": header_text,
            "webhook-signature": header_text,
            "Stripe-Signature": header_text,
        },
    ),
    st.binary(max_size=200),
    st.sampled_from(["standard", "stripe"]),
)
def test_any_unsigned_headers_and_body_get_a_coded_refusal_never_a_crash(
    headers: dict[str, str], body: bytes, scheme: str
) -> None:
    secret = SECRET if scheme == "standard" else STRIPE_SECRET
    # Random headers never carry a valid HMAC: every input must be a coded refusal.
    with pytest.raises(SignatureError) as caught:
        verify_webhook(body, headers, secret, scheme=scheme, now=NOW)  # type: ignore[arg-type]
    assert caught.value.status in {400, 401, 413}
    assert caught.value.code in {"SIGNATURE_INVALID", "SIGNATURE_EXPIRED", "PAYLOAD_TOO_LARGE"}
