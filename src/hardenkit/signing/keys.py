"""Ed25519 keys from PEM or raw base64, as they come from settings and key files.

A private key is PEM (PKCS#8, unencrypted) or the base64 of its 32-byte seed; a public key
is PEM (SubjectPublicKeyInfo) or the base64 of its 32 raw bytes. Base64 may be standard or
URL-safe, padded or not. Error messages never contain the key text.
"""

from __future__ import annotations

import base64
import binascii

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

__all__ = [
    "generate_private_key",
    "load_private_key",
    "load_public_key",
    "private_key_text",
    "public_key_text",
]

_RAW_KEY_SIZE = 32
_URLSAFE_TO_STANDARD = str.maketrans("-_", "+/")


def _raw(text: str, what: str) -> bytes:
    # URL-safe and standard alphabets are both accepted, with or without padding.
    cleaned = "".join(text.split()).translate(_URLSAFE_TO_STANDARD).rstrip("=")
    try:
        raw = base64.b64decode(cleaned + "=" * (-len(cleaned) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{what} is neither PEM nor base64") from None
    if len(raw) != _RAW_KEY_SIZE:
        raise ValueError(f"{what} in base64 must be {_RAW_KEY_SIZE} bytes (raw Ed25519)")
    return raw


def _text(value: str | bytes) -> str:
    return value.decode("ascii", "replace") if isinstance(value, bytes) else value


def load_private_key(value: str | bytes | Ed25519PrivateKey) -> Ed25519PrivateKey:
    """Return the Ed25519 private key in ``value`` (PEM or base64 seed).

    Raises:
        ValueError: Not an Ed25519 private key (the message omits the value).
    """
    if isinstance(value, Ed25519PrivateKey):
        return value
    text = _text(value).strip()
    if text.startswith("-----BEGIN"):
        try:
            key = serialization.load_pem_private_key(text.encode("ascii"), password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise ValueError("the private key PEM cannot be read (encrypted or damaged?)") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError("the private key is not an Ed25519 key")
        return key
    return Ed25519PrivateKey.from_private_bytes(_raw(text, "the private key"))


def load_public_key(value: str | bytes | Ed25519PublicKey) -> Ed25519PublicKey:
    """Return the Ed25519 public key in ``value`` (PEM or base64 of the 32 raw bytes).

    Raises:
        ValueError: Not an Ed25519 public key.
    """
    if isinstance(value, Ed25519PublicKey):
        return value
    text = _text(value).strip()
    if text.startswith("-----BEGIN"):
        try:
            key = serialization.load_pem_public_key(text.encode("ascii"))
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise ValueError("the public key PEM cannot be read") from None
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("the public key is not an Ed25519 key")
        return key
    return Ed25519PublicKey.from_public_bytes(_raw(text, "the public key"))


def generate_private_key() -> Ed25519PrivateKey:
    """Return a new random Ed25519 private key."""
    return Ed25519PrivateKey.generate()


def private_key_text(key: Ed25519PrivateKey) -> str:
    """Return ``key``'s 32-byte seed as base64 (the form ``load_private_key`` reads)."""
    raw = key.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    return base64.b64encode(raw).decode("ascii")


def public_key_text(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """Return the public key as base64 of its 32 raw bytes (what peers put in settings)."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")
