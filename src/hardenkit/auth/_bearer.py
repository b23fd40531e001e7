"""The credential of a request: one ``Authorization: Bearer`` header, capped in size."""

from __future__ import annotations

from hardenkit.auth._refusal import AuthRefusedError, unauthenticated
from hardenkit.auth.errors import PublicReason, RefusalReason, TokenRejectedError

__all__ = ["bearer_token"]


def bearer_token(values: list[bytes], max_header_bytes: int) -> bytes:
    """Return the token of the request's ``Authorization`` header values.

    Raises:
        AuthRefusedError: No header, two headers, one over ``max_header_bytes``, or one
            that is not ``Bearer <token>``.
    """
    if not values:
        raise _refused(RefusalReason.MISSING, "missing")
    if len(values) > 1:
        raise _refused(RefusalReason.AMBIGUOUS_CREDENTIALS)
    value = values[0]
    if len(value) > max_header_bytes:
        raise _refused(RefusalReason.HEADER_TOO_LARGE)
    scheme, _, token = value.partition(b" ")
    token = token.strip(b" ")
    if scheme.lower() != b"bearer" or not token or b" " in token:
        raise _refused(RefusalReason.MALFORMED_HEADER)
    return token


def _refused(reason: RefusalReason, public_reason: PublicReason = "invalid") -> AuthRefusedError:
    return unauthenticated(TokenRejectedError(reason, public_reason))
