"""Parsers for webhook signature headers, bounded in size and in the work they cause.

Pure functions: they raise :class:`HeaderError` with a stable reason and never anything
else, whatever the input. A header longer than ``max_bytes`` or listing more than
``max_signatures`` entries is refused outright: a real sender lists one signature per
active secret (two during a rotation), so a long list is an attack or a bug, and refusing
it keeps the work per request fixed.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

__all__ = [
    "DEFAULT_MAX_SIGNATURES",
    "DEFAULT_MAX_SIGNATURE_HEADER_BYTES",
    "HeaderError",
    "StripeSignatureHeader",
    "parse_standard_signature_header",
    "parse_stripe_signature_header",
    "parse_timestamp",
]

DEFAULT_MAX_SIGNATURES = 10
DEFAULT_MAX_SIGNATURE_HEADER_BYTES = 4096

_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_HEX_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_SHA256_SIZE = 32


class HeaderError(ValueError):
    """A signature header that cannot be used; ``reason`` is stable and safe to log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class StripeSignatureHeader:
    """A parsed ``t=…,v1=…`` header: the signed timestamp and the ``v1`` digests."""

    timestamp: int
    timestamp_text: str
    signatures: tuple[bytes, ...]


def parse_timestamp(text: str) -> int:
    """Parse a unix timestamp in seconds: 1 to 12 ASCII digits, nothing else."""
    if not _TIMESTAMP.fullmatch(text):
        raise HeaderError("malformed_timestamp")
    return int(text)


def _check_size(value: str, max_bytes: int) -> None:
    if len(value) > max_bytes:
        raise HeaderError("signature_header_too_large")


def parse_stripe_signature_header(
    value: str,
    *,
    max_signatures: int = DEFAULT_MAX_SIGNATURES,
    max_bytes: int = DEFAULT_MAX_SIGNATURE_HEADER_BYTES,
) -> StripeSignatureHeader:
    """Parse a Stripe-style header ``t=<unix seconds>,v1=<hex>[,v1=<hex>...]``.

    Entries of other schemes (``v0=``) count toward ``max_signatures`` and are ignored;
    ``v1`` entries that are not 64 hex digits can never match and are ignored too.

    Raises:
        HeaderError: Too large, too many entries, no or several ``t``, a malformed
            timestamp, or no usable ``v1`` signature.
    """
    _check_size(value, max_bytes)
    entries = value.split(",")
    if len(entries) > max_signatures + 1:  # one ``t`` plus the signatures
        raise HeaderError("too_many_signatures")
    timestamp: int | None = None
    timestamp_text = ""
    signatures: list[bytes] = []
    for entry in entries:
        name, separator, item = entry.strip().partition("=")
        if not separator:
            raise HeaderError("malformed_signature_header")
        if name == "t":
            if timestamp is not None:
                raise HeaderError("malformed_signature_header")
            timestamp = parse_timestamp(item)
            timestamp_text = item
        elif name == "v1" and _HEX_SHA256.fullmatch(item):
            signatures.append(bytes.fromhex(item))
    if timestamp is None:
        raise HeaderError("malformed_signature_header")
    if not signatures:
        raise HeaderError("no_v1_signature")
    return StripeSignatureHeader(timestamp, timestamp_text, tuple(signatures))


def parse_standard_signature_header(
    value: str,
    *,
    max_signatures: int = DEFAULT_MAX_SIGNATURES,
    max_bytes: int = DEFAULT_MAX_SIGNATURE_HEADER_BYTES,
) -> tuple[bytes, ...]:
    """Parse a Standard Webhooks ``webhook-signature`` header: ``v1,<base64> v1,<base64>``.

    Entries of other versions (``v1a`` asymmetric signatures) count toward
    ``max_signatures`` and are ignored, as are ``v1`` entries that are not the base64 of
    32 bytes.

    Raises:
        HeaderError: Too large, too many entries, or no usable ``v1`` signature.
    """
    _check_size(value, max_bytes)
    entries = value.split()
    if len(entries) > max_signatures:
        raise HeaderError("too_many_signatures")
    signatures: list[bytes] = []
    for entry in entries:
        version, separator, encoded = entry.partition(",")
        if version != "v1" or not separator:
            continue
        digest = _b64decode(encoded)
        if digest is not None and len(digest) == _SHA256_SIZE:
            signatures.append(digest)
    if not signatures:
        raise HeaderError("no_v1_signature")
    return tuple(signatures)


def _b64decode(text: str) -> bytes | None:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        return None
