"""Why a credential was refused, in words safe to log and coarse words safe to send."""

from __future__ import annotations

from typing import Literal

__all__ = ["KeysUnavailableError", "PublicReason", "TokenRejectedError"]

PublicReason = Literal["missing", "invalid", "expired"]


class TokenRejectedError(Exception):
    """A bearer token that must not be trusted.

    Attributes:
        reason: A stable snake_case reason for logs, audit events and metrics
            (``"bad_signature"``, ``"alg_none"``, ``"unknown_kid"``...). It never holds any
            part of the token.
        public_reason: What the client may be told: ``missing``, ``invalid`` or
            ``expired``.
    """

    def __init__(self, reason: str, public_reason: PublicReason = "invalid") -> None:
        self.reason = reason
        self.public_reason: PublicReason = public_reason
        super().__init__(reason)


class KeysUnavailableError(TokenRejectedError):
    """No verification key could be obtained (the JWKS was never loaded).

    The token may be fine; the service cannot tell, so it answers 503 rather than 401.
    """

    def __init__(self) -> None:
        super().__init__("keys_unavailable")
