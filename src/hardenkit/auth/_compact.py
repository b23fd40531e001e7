"""Strict parsing of JWS compact serialization, before and around signature checks.

Everything here runs on bytes an attacker chose, so each step is bounded: the segment
count is checked by counting dots, base64url must be canonical and unpadded, JSON must be
UTF-8, an object, free of ``NaN``/``Infinity`` and shallow. Any failure raises
:class:`~hardenkit.auth.errors.TokenRejectedError`; nothing here raises anything else.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from hardenkit._json_text import decode_text
from hardenkit.auth.errors import TokenRejectedError

MAX_JSON_DEPTH = 16
"""Deepest nesting of arrays/objects accepted in a JOSE header or claim set."""

_BASE64URL = re.compile(rb"[A-Za-z0-9_-]*")
_PADDING = (b"", b"", b"==", b"=")


def split_token(token: bytes) -> tuple[bytes, bytes, bytes]:
    """Split a compact JWS into header, payload and signature segments."""
    dots = token.count(b".")
    if dots != 2:
        # Five segments is the JWE compact form: encrypted tokens are not verified here.
        raise TokenRejectedError("jwe_refused" if dots == 4 else "malformed")
    header, payload, signature = token.split(b".")
    return header, payload, signature


def b64url_decode(segment: bytes) -> bytes:
    """Decode one unpadded, canonical base64url segment."""
    if len(segment) % 4 == 1 or _BASE64URL.fullmatch(segment) is None:
        raise TokenRejectedError("malformed")
    try:
        decoded = base64.urlsafe_b64decode(segment + _PADDING[len(segment) % 4])
    except (binascii.Error, ValueError):
        raise TokenRejectedError("malformed") from None
    # Unused low bits must be zero, or two token strings would carry one value.
    if base64.urlsafe_b64encode(decoded).rstrip(b"=") != segment:
        raise TokenRejectedError("malformed")
    return decoded


def json_object(data: bytes) -> dict[str, Any]:
    """Parse a JSON object from UTF-8 bytes.

    Deep nesting, non-finite numbers (``NaN``, ``Infinity``, ``1e999``) and strings
    holding a lone surrogate are refused.
    """
    if data.count(b"[") + data.count(b"{") > MAX_JSON_DEPTH and _depth(data) > MAX_JSON_DEPTH:
        raise TokenRejectedError("malformed")
    try:
        # No lone surrogate, no NaN, Infinity or 1e999: the claims would fail where used
        # (a JSON response of them is a 500).
        value = decode_text(data.decode("utf-8"))
    except (ValueError, RecursionError):
        # UnicodeDecodeError, UnicodeEncodeError and JSONDecodeError are ValueErrors;
        # RecursionError is the parser's own answer to nesting the depth check above did
        # not see.
        raise TokenRejectedError("malformed") from None
    if not isinstance(value, dict):
        raise TokenRejectedError("malformed")
    return value


def _depth(data: bytes) -> int:
    """Return the deepest array/object nesting of JSON text, ignoring string contents."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in data:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
            if deepest > MAX_JSON_DEPTH:
                return deepest
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return deepest
