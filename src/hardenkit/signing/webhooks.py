"""Webhook signatures over the exact raw body: Standard Webhooks and Stripe-style.

Standard Webhooks (https://www.standardwebhooks.com): headers ``webhook-id``,
``webhook-timestamp`` and ``webhook-signature`` (``v1,<base64>`` entries separated by
spaces); the signed content is ``{id}.{timestamp}.{body}``, HMAC-SHA256 with the decoded
``whsec_`` key. Stripe-style: one header ``t=<timestamp>,v1=<hex>[,v1=<hex>]``; the signed
content is ``{t}.{body}``, HMAC-SHA256 keyed with the secret text, hex encoded.

Several secrets may be active at once (rotation): a delivery is accepted when any listed
signature matches any active secret. Comparison is constant-time (``hmac.compare_digest``)
and the work per request is bounded: one HMAC per active secret, and headers with more
than ``max_signatures`` entries or ``max_header_bytes`` bytes are refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets as _random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from starlette.requests import Request

from hardenkit.errors import ErrorCode
from hardenkit.signing._body import read_request_body
from hardenkit.signing._headers import (
    DEFAULT_MAX_SIGNATURE_HEADER_BYTES,
    DEFAULT_MAX_SIGNATURES,
    HeaderError,
    parse_standard_signature_header,
    parse_stripe_signature_header,
    parse_timestamp,
)
from hardenkit.signing._refusal import SignatureError, refuse
from hardenkit.signing._secret import WebhookScheme, webhook_keys

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_TOLERANCE_SECONDS",
    "STANDARD_HEADERS",
    "VerifiedWebhook",
    "WebhookScheme",
    "WebhookVerifier",
    "sign_webhook",
    "verify_webhook",
]

DEFAULT_TOLERANCE_SECONDS = 300
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
STRIPE_SIGNATURE_HEADER = "Stripe-Signature"
STANDARD_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")

_WEBHOOK_ID = re.compile(r"[\x21-\x7e]{1,256}")


@dataclass(frozen=True, slots=True)
class VerifiedWebhook:
    """A delivery whose signature and timestamp were verified.

    Attributes:
        scheme: ``"standard"`` or ``"stripe"``.
        id: The ``webhook-id`` header (Standard Webhooks) or the top-level string ``id``
            of a JSON body (Stripe-style events), when there is one.
        timestamp: The signed unix timestamp, seconds.
        body: The exact raw body that was verified.
    """

    scheme: WebhookScheme
    id: str | None
    timestamp: int
    body: bytes = field(repr=False)

    @property
    def dedupe_key(self) -> str:
        """Key under which this delivery is remembered: its id, else a hash of what was signed.

        Without an id only an exact replay (same timestamp and body) is recognised.
        """
        if self.id is not None:
            return f"{self.scheme}:id:{self.id}"
        digest = hashlib.sha256(b"%d." % self.timestamp + self.body).hexdigest()
        return f"{self.scheme}:sha256:{digest}"


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    for key, item in headers.items():
        if key.lower() == lowered:
            return item
    return None


class WebhookVerifier:
    """Verifies webhook deliveries against a fixed set of secrets (decoded once).

    Use ``verifier.verify(body, headers)`` anywhere, the verifier itself as a
    Starlette/FastAPI dependency (``Depends(verifier)``: reads the body under the limit
    and leaves it readable by the endpoint), or :class:`WebhookMiddleware` on chosen paths
    (which also processes each delivery once).

    Args:
        secrets: One secret, a comma-separated list, or an iterable; every one is accepted
            (list the new secret first during a rotation). Standard Webhooks secrets are
            ``whsec_<base64>``; Stripe-style secrets are used as text; ``bytes`` are raw keys.
        scheme: ``"standard"`` (Standard Webhooks) or ``"stripe"`` (Stripe-style).
        tolerance: Seconds a signed timestamp may differ from now, either way.
        max_body_bytes: Largest body accepted (413 beyond it).
        max_signatures: Most signature entries a header may list.
        max_header_bytes: Longest signature header accepted.
        signature_header: Header of the Stripe-style format.
        clock: Wall clock in unix seconds, replaceable in tests.

    Raises:
        ValueError: A secret is malformed or too short, or a limit is not positive.
    """

    def __init__(
        self,
        secrets: str | bytes | Iterable[str | bytes],
        *,
        scheme: WebhookScheme = "standard",
        tolerance: float = DEFAULT_TOLERANCE_SECONDS,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        max_signatures: int = DEFAULT_MAX_SIGNATURES,
        max_header_bytes: int = DEFAULT_MAX_SIGNATURE_HEADER_BYTES,
        signature_header: str = STRIPE_SIGNATURE_HEADER,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if scheme not in ("standard", "stripe"):
            raise ValueError(f"scheme must be 'standard' or 'stripe', not {scheme!r}")
        if tolerance <= 0 or max_body_bytes <= 0 or max_signatures <= 0 or max_header_bytes <= 0:
            raise ValueError("tolerance and every limit must be positive")
        self.scheme: WebhookScheme = scheme
        self._keys = webhook_keys(secrets, scheme)
        self.tolerance = tolerance
        self.max_body_bytes = max_body_bytes
        self.max_signatures = max_signatures
        self.max_header_bytes = max_header_bytes
        self.signature_header = signature_header
        self._clock = clock

    def __repr__(self) -> str:
        return (
            f"WebhookVerifier(scheme={self.scheme!r}, secrets={len(self._keys)}, "
            f"tolerance={self.tolerance!r})"
        )

    def verify(
        self, body: bytes, headers: Mapping[str, str], *, now: float | None = None
    ) -> VerifiedWebhook:
        """Verify one delivery; return what was verified or raise :class:`SignatureError`.

        Refusals: 413 ``PAYLOAD_TOO_LARGE`` (body over the limit); 400
        ``SIGNATURE_INVALID`` (a header missing, malformed, too large or listing too many
        signatures); 401 ``SIGNATURE_INVALID`` (no signature matches an active secret);
        401 ``SIGNATURE_EXPIRED`` (timestamp outside the tolerance window).
        """
        try:
            return self._verify(body, headers, now)
        except SignatureError as error:
            error.record()  # leaving hardenkit: recorded here, once
            raise

    def _verify(
        self, body: bytes, headers: Mapping[str, str], now: float | None
    ) -> VerifiedWebhook:
        if len(body) > self.max_body_bytes:
            raise refuse(
                "body_too_large",
                f"The webhook body is larger than {self.max_body_bytes} bytes.",
                kind="webhook",
                code=ErrorCode.PAYLOAD_TOO_LARGE,
                status=413,
            )
        webhook_id: str | None
        if self.scheme == "standard":
            webhook_id, timestamp = self._standard(body, headers)
        else:
            webhook_id, timestamp = self._stripe(body, headers)
        self._check_timestamp(timestamp, self._clock() if now is None else now)
        return VerifiedWebhook(self.scheme, webhook_id, timestamp, body)

    async def __call__(self, request: Request) -> VerifiedWebhook:
        """Starlette/FastAPI dependency: verify the request; ``request.body()`` stays readable.

        Verification only: deduplication is :class:`WebhookMiddleware`'s job, or the
        endpoint's with :meth:`ReplayStore.claim` on :attr:`VerifiedWebhook.dedupe_key`.
        """
        body = await read_request_body(request, self.max_body_bytes, "webhook")
        return self.verify(body, request.headers)

    def _standard(self, body: bytes, headers: Mapping[str, str]) -> tuple[str, int]:
        found: dict[str, str] = {}
        for name in STANDARD_HEADERS:
            value = _header(headers, name)
            if value is None:
                raise _malformed("missing_header", f"The {name} header is missing.")
            found[name] = value
        webhook_id = found["webhook-id"]
        timestamp_text = found["webhook-timestamp"]
        signature = found["webhook-signature"]
        if not _WEBHOOK_ID.fullmatch(webhook_id):
            raise _malformed("malformed_webhook_id", "The webhook-id header is malformed.")
        try:
            timestamp = parse_timestamp(timestamp_text)
            candidates = parse_standard_signature_header(
                signature, max_signatures=self.max_signatures, max_bytes=self.max_header_bytes
            )
        except HeaderError as error:
            raise _malformed(error.reason, "The webhook signature headers are malformed.") from None
        content = f"{webhook_id}.{timestamp_text}.".encode() + body
        self._match(content, candidates)
        return webhook_id, timestamp

    def _stripe(self, body: bytes, headers: Mapping[str, str]) -> tuple[str | None, int]:
        value = _header(headers, self.signature_header)
        if value is None:
            raise _malformed("missing_header", f"The {self.signature_header} header is missing.")
        try:
            parsed = parse_stripe_signature_header(
                value, max_signatures=self.max_signatures, max_bytes=self.max_header_bytes
            )
        except HeaderError as error:
            raise _malformed(
                error.reason, f"The {self.signature_header} header is malformed."
            ) from None
        self._match(f"{parsed.timestamp_text}.".encode() + body, parsed.signatures)
        return _event_id(body), parsed.timestamp

    def _match(self, content: bytes, candidates: Sequence[bytes]) -> None:
        matched = False
        for key in self._keys:
            expected = hmac.new(key, content, hashlib.sha256).digest()
            for candidate in candidates:
                # No early exit: the time taken does not depend on which entry matched.
                matched |= hmac.compare_digest(expected, candidate)
        if not matched:
            raise refuse(
                "signature_mismatch",
                "No webhook signature matches an active secret.",
                kind="webhook",
            )

    def _check_timestamp(self, timestamp: int, now: float) -> None:
        if timestamp < now - self.tolerance:
            reason = "timestamp_too_old"
        elif timestamp > now + self.tolerance:
            reason = "timestamp_in_future"
        else:
            return
        raise refuse(
            reason,
            "The webhook timestamp is outside the accepted window.",
            kind="webhook",
            code=ErrorCode.SIGNATURE_EXPIRED,
        )


def _malformed(reason: str, detail: str) -> SignatureError:
    return refuse(reason, detail, kind="webhook", status=400)


def _event_id(body: bytes) -> str | None:
    """Return the top-level ``"id"`` of a JSON object body (how Stripe names its events)."""
    if not body.startswith(b"{"):
        return None
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return None
    event_id = document.get("id") if isinstance(document, dict) else None
    if isinstance(event_id, str) and _WEBHOOK_ID.fullmatch(event_id):
        return event_id
    return None


def verify_webhook(
    body: bytes,
    headers: Mapping[str, str],
    secrets: str | bytes | Iterable[str | bytes],
    *,
    scheme: WebhookScheme = "standard",
    tolerance: float = DEFAULT_TOLERANCE_SECONDS,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    now: float | None = None,
) -> VerifiedWebhook:
    """Verify one webhook delivery over its exact raw body.

    Args:
        body: The raw request body, byte for byte as received (never re-serialised JSON).
        headers: The request headers (any mapping; names are matched case-insensitively).
        secrets: The active secret(s); see :class:`WebhookVerifier`.
        scheme: ``"standard"`` or ``"stripe"``.
        tolerance: Seconds the signed timestamp may differ from now.
        max_body_bytes: Largest body accepted.
        now: Unix time to check against; the current time when omitted.

    Returns:
        The verified delivery.

    Raises:
        SignatureError: The delivery is refused (a coded 4xx problem).
        ValueError: A secret is malformed (a configuration error, not a bad delivery).
    """
    verifier = WebhookVerifier(
        secrets, scheme=scheme, tolerance=tolerance, max_body_bytes=max_body_bytes
    )
    return verifier.verify(body, headers, now=now)


def sign_webhook(
    body: bytes,
    secrets: str | bytes | Iterable[str | bytes],
    *,
    scheme: WebhookScheme = "standard",
    webhook_id: str | None = None,
    timestamp: int | None = None,
    signature_header: str = STRIPE_SIGNATURE_HEADER,
) -> dict[str, str]:
    """Return the headers that sign an outbound webhook ``body`` for its receiver.

    With several secrets (a rotation), one signature per secret is listed, so a receiver
    holding either secret accepts the delivery.

    Args:
        body: The exact bytes that will be sent as the request body.
        secrets: The secret(s) shared with the receiver.
        scheme: ``"standard"`` (headers ``webhook-id``, ``webhook-timestamp``,
            ``webhook-signature``) or ``"stripe"`` (one ``t=…,v1=…`` header).
        webhook_id: Standard Webhooks id; keep it the same across retries of one event so
            the receiver can deduplicate. A random ``msg_…`` id when omitted.
        timestamp: Unix seconds to sign; now when omitted (use now on every retry).
        signature_header: Header name of the Stripe-style format.

    Raises:
        ValueError: A secret or the webhook id is unusable.
    """
    keys = webhook_keys(secrets, scheme)
    signed_at = int(time.time()) if timestamp is None else timestamp
    if scheme == "stripe":
        content = b"%d." % signed_at + body
        entries = ["v1=" + hmac.new(key, content, hashlib.sha256).hexdigest() for key in keys]
        return {signature_header: ",".join([f"t={signed_at}", *entries])}
    if webhook_id is None:
        webhook_id = "msg_" + _random.token_urlsafe(18)
    if not _WEBHOOK_ID.fullmatch(webhook_id) or "." in webhook_id:
        raise ValueError("webhook_id must be 1-256 printable ASCII characters without '.'")
    content = f"{webhook_id}.{signed_at}.".encode() + body
    signatures = ["v1," + _b64(hmac.new(key, content, hashlib.sha256).digest()) for key in keys]
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(signed_at),
        "webhook-signature": " ".join(signatures),
    }


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")
