"""Signed messages between services and agents: Ed25519 over canonical JSON.

A signed message is a JSON object with exactly these members::

    {"v": 1, "key_id": "billing-agent", "timestamp": 1767225600,
     "nonce": "q0Jx0c1f3U2h4m5r6t7v8w", "payload": {...}, "signature": "<base64url>"}

The signature is Ed25519 over the canonical JSON (keys sorted, no whitespace, UTF-8, no
NaN/Infinity) of the object without ``signature``: ``{"key_id", "nonce", "payload",
"timestamp", "v"}``. Verification looks the key up by ``key_id`` among the keys the
receiver trusts; a message naming any other member (a public key, a JWK, a certificate)
is refused, so no key shipped inside a message is ever used. Then the timestamp must be
within the tolerance window and the nonce never seen before (through :class:`ReplayStore`).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from starlette.requests import Request

from hardenkit.errors import ErrorCode
from hardenkit.signing._body import read_request_body
from hardenkit.signing._key_id import safe_key_id
from hardenkit.signing._refusal import SignatureError, refuse
from hardenkit.signing.keys import load_private_key, load_public_key
from hardenkit.signing.replay import ReplayStore

__all__ = [
    "MESSAGE_VERSION",
    "MessageVerifier",
    "VerifiedMessage",
    "canonical_json",
    "sign_message",
    "signed_content",
    "verify_message",
]

MESSAGE_VERSION = 1
DEFAULT_MESSAGE_TOLERANCE_SECONDS = 300
DEFAULT_MAX_MESSAGE_BYTES = 256 * 1024

_FIELDS = frozenset({"v", "key_id", "timestamp", "nonce", "payload", "signature"})
_NONCE = re.compile(r"[A-Za-z0-9_\-]{16,128}")
_SIGNATURE = re.compile(r"[A-Za-z0-9_\-]{86}")
_MAX_TIMESTAMP = 10**12


def canonical_json(value: Any) -> bytes:
    """Return the canonical encoding: sorted keys, no whitespace, UTF-8, finite numbers only.

    Raises:
        ValueError: ``value`` holds something JSON cannot carry (NaN, a non-string key
            that collides, a lone surrogate, an object that is not JSON).
    """
    try:
        text = json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
        return text.encode("utf-8")
    except (TypeError, ValueError, RecursionError, UnicodeEncodeError) as error:
        raise ValueError(f"not canonical JSON: {type(error).__name__}") from None


def signed_content(payload: Any, *, key_id: str, timestamp: int, nonce: str) -> bytes:
    """Return the exact bytes an Ed25519 signature of a message covers."""
    return canonical_json(
        {
            "key_id": key_id,
            "nonce": nonce,
            "payload": payload,
            "timestamp": timestamp,
            "v": MESSAGE_VERSION,
        }
    )


def sign_message(
    payload: Any,
    private_key: Ed25519PrivateKey | str | bytes,
    *,
    key_id: str,
    timestamp: int | None = None,
    nonce: str | None = None,
) -> dict[str, Any]:
    """Return ``payload`` wrapped in a signed message (a JSON-ready dict).

    Args:
        payload: Any JSON value. It is sent as its canonical form, so what the receiver
            sees is exactly what was signed; prefer integers or strings to floats when the
            receiver is not Python (float text differs between JSON encoders).
        private_key: The sender's Ed25519 key (object, PEM, or base64 seed).
        key_id: The id under which receivers trust the matching public key.
        timestamp: Unix seconds; now when omitted.
        nonce: Unique per message; 16 random bytes (base64url) when omitted.

    Raises:
        ValueError: The key, key id, nonce or payload is unusable.
    """
    key = load_private_key(private_key)
    if safe_key_id(key_id) is None:
        raise ValueError("key_id must be 1-128 characters of A-Z a-z 0-9 . _ : -")
    nonce = secrets.token_urlsafe(16) if nonce is None else nonce
    if not _NONCE.fullmatch(nonce):
        raise ValueError("nonce must be 16-128 characters of A-Z a-z 0-9 _ -")
    signed_at = int(time.time()) if timestamp is None else timestamp
    normalized = json.loads(canonical_json(payload))
    content = signed_content(normalized, key_id=key_id, timestamp=signed_at, nonce=nonce)
    signature = base64.urlsafe_b64encode(key.sign(content)).rstrip(b"=").decode("ascii")
    return {
        "v": MESSAGE_VERSION,
        "key_id": key_id,
        "timestamp": signed_at,
        "nonce": nonce,
        "payload": normalized,
        "signature": signature,
    }


@dataclass(frozen=True, slots=True)
class VerifiedMessage:
    """A message whose signature, timestamp and nonce were verified.

    Attributes:
        payload: The signed payload.
        key_id: Who signed it (the trusted key id).
        timestamp: When it was signed, unix seconds.
        nonce: Its nonce (already recorded as used).
    """

    payload: Any
    key_id: str
    timestamp: int
    nonce: str


def _malformed(reason: str, detail: str, key_id: str | None = None) -> SignatureError:
    return refuse(reason, detail, kind="message", status=400, key_id=key_id)


def _parse(message: Mapping[str, Any] | bytes | str) -> Mapping[str, Any]:
    if isinstance(message, bytes | str):
        try:
            message = json.loads(message)
        except (ValueError, RecursionError):
            raise _malformed("malformed_message", "The message is not valid JSON.") from None
    if not isinstance(message, Mapping):
        raise _malformed("malformed_message", "The message must be a JSON object.")
    return message


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class MessageVerifier:
    """Verifies signed messages against keys trusted by key id.

    Use ``await verifier.verify(message)`` anywhere, or the verifier itself as a
    Starlette/FastAPI dependency (``Depends(verifier)``) that reads the request body.

    Args:
        trusted_keys: Key id -> Ed25519 public key (object, PEM or base64).
        replay_store: Where nonces are remembered. ``None`` disables replay protection
            (the timestamp window still applies); pass it explicitly to mean it.
        tolerance: Seconds a message timestamp may differ from now, either way.
        max_body_bytes: Largest request body the dependency reads (413 beyond).
        clock: Wall clock in unix seconds, replaceable in tests.

    Raises:
        ValueError: A trusted key or key id is unusable, or a limit is not positive.
    """

    def __init__(
        self,
        trusted_keys: Mapping[str, Ed25519PublicKey | str | bytes],
        *,
        replay_store: ReplayStore | None,
        tolerance: float = DEFAULT_MESSAGE_TOLERANCE_SECONDS,
        max_body_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if tolerance <= 0 or max_body_bytes <= 0:
            raise ValueError("tolerance and max_body_bytes must be positive")
        keys: dict[str, Ed25519PublicKey] = {}
        for key_id, key in trusted_keys.items():
            if safe_key_id(key_id) is None:
                raise ValueError("trusted key ids must be 1-128 characters of A-Z a-z 0-9 . _ : -")
            try:
                keys[key_id] = load_public_key(key)
            except ValueError as error:
                raise ValueError(f"trusted key {key_id!r}: {error}") from None
        self._keys = keys
        self.replay_store = replay_store
        self.tolerance = tolerance
        self.max_body_bytes = max_body_bytes
        self._clock = clock

    @property
    def key_ids(self) -> frozenset[str]:
        """The trusted key ids."""
        return frozenset(self._keys)

    def check_signature(
        self, message: Mapping[str, Any] | bytes | str, *, now: float | None = None
    ) -> VerifiedMessage:
        """Verify form, trusted key, signature and timestamp window; not the nonce.

        Raises:
            SignatureError: 400 ``SIGNATURE_INVALID`` (malformed, or members other than
                the six of a signed message), 401 ``SIGNATURE_INVALID`` (untrusted key id
                or a signature that does not verify), 401 ``SIGNATURE_EXPIRED`` (outside
                the window).
        """
        try:
            return self._check_signature(message, now)
        except SignatureError as error:
            error.record()  # leaving hardenkit: recorded here, once
            raise

    def _check_signature(
        self, message: Mapping[str, Any] | bytes | str, now: float | None
    ) -> VerifiedMessage:
        envelope = _parse(message)
        names = set(envelope)
        if names - _FIELDS:
            # A key, JWK or certificate shipped with the message is never looked at.
            raise _malformed("unexpected_fields", "The message has members it may not carry.")
        if _FIELDS - names:
            raise _malformed("missing_fields", "The message lacks members it must carry.")
        version, key_id, timestamp = envelope["v"], envelope["key_id"], envelope["timestamp"]
        nonce, signature = envelope["nonce"], envelope["signature"]
        if not _is_int(version) or version != MESSAGE_VERSION:
            raise _malformed("unsupported_version", "The message version is not supported.")
        if safe_key_id(key_id) is None:
            raise _malformed("malformed_key_id", "The message key_id is malformed.")
        if not _is_int(timestamp) or not 0 <= timestamp < _MAX_TIMESTAMP:
            raise _malformed("malformed_timestamp", "The message timestamp is malformed.", key_id)
        if not isinstance(nonce, str) or not _NONCE.fullmatch(nonce):
            raise _malformed("malformed_nonce", "The message nonce is malformed.", key_id)
        if not isinstance(signature, str) or not _SIGNATURE.fullmatch(signature):
            raise _malformed("malformed_signature", "The message signature is malformed.", key_id)
        public_key = self._keys.get(key_id)
        if public_key is None:
            raise refuse(
                "untrusted_key",
                "The message is not signed by a trusted key.",
                kind="message",
                key_id=key_id,
            )
        try:
            content = signed_content(
                envelope["payload"], key_id=key_id, timestamp=timestamp, nonce=nonce
            )
            public_key.verify(_b64url(signature), content)
        except (InvalidSignature, ValueError):
            raise refuse(
                "signature_mismatch",
                "The message signature does not verify.",
                kind="message",
                key_id=key_id,
            ) from None
        now = self._clock() if now is None else now
        if not now - self.tolerance <= timestamp <= now + self.tolerance:
            raise refuse(
                "timestamp_too_old" if timestamp < now else "timestamp_in_future",
                "The message timestamp is outside the accepted window.",
                kind="message",
                code=ErrorCode.SIGNATURE_EXPIRED,
                key_id=key_id,
            )
        return VerifiedMessage(envelope["payload"], key_id, timestamp, nonce)

    async def verify(
        self, message: Mapping[str, Any] | bytes | str, *, now: float | None = None
    ) -> VerifiedMessage:
        """Verify a message completely, recording its nonce; a second delivery is refused.

        Raises:
            SignatureError: As :meth:`check_signature`, and 401 ``SIGNATURE_INVALID`` with
                reason ``replayed`` when the nonce was seen before.
        """
        try:
            return await self._verify(message, now)
        except SignatureError as error:
            error.record()
            raise

    async def _verify(
        self, message: Mapping[str, Any] | bytes | str, now: float | None
    ) -> VerifiedMessage:
        verified = self._check_signature(message, now)
        store = self.replay_store
        if store is not None:
            # Remembered for the whole window in which the timestamp is acceptable.
            key = f"nonce:{verified.key_id}:{verified.nonce}"
            if not await store.remember(key, ttl=2 * self.tolerance + 1):
                raise refuse(
                    "replayed",
                    "This message was already received.",
                    kind="message",
                    key_id=verified.key_id,
                )
        return verified

    async def __call__(self, request: Request) -> VerifiedMessage:
        """Starlette/FastAPI dependency: verify the request body as a signed message."""
        body = await read_request_body(request, self.max_body_bytes, "message")
        return await self.verify(body)


def _b64url(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("signature is not base64url") from None


async def verify_message(
    message: Mapping[str, Any] | bytes | str,
    trusted_keys: Mapping[str, Ed25519PublicKey | str | bytes],
    *,
    replay_store: ReplayStore | None,
    tolerance: float = DEFAULT_MESSAGE_TOLERANCE_SECONDS,
    now: float | None = None,
) -> VerifiedMessage:
    """Verify one signed message: trusted key by id, signature, timestamp window, nonce.

    Args:
        message: The message as a parsed object or the raw JSON.
        trusted_keys: Key id -> public key (object, PEM or base64). Only these are used.
        replay_store: Where nonces are remembered; ``None`` skips the replay check (say so
            explicitly: a replay inside the window is then accepted).
        tolerance: Seconds the timestamp may differ from now.
        now: Unix time to check against; the current time when omitted.

    Returns:
        The verified message.

    Raises:
        SignatureError: The message is refused (a coded 4xx problem).
        ValueError: A trusted key is unusable (configuration, not the message).
    """
    verifier = MessageVerifier(trusted_keys, replay_store=replay_store, tolerance=tolerance)
    return await verifier.verify(message, now=now)
