"""Why a credential was refused, in words safe to log and coarse words safe to send."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

__all__ = ["KeysUnavailableError", "PublicReason", "RefusalReason", "TokenRejectedError"]

PublicReason = Literal["missing", "invalid", "expired"]


class RefusalReason(StrEnum):
    """Why a request was refused before any credential check could say more.

    Shared by the auth middleware, the API-key guard and ``require_roles`` /
    ``require_scopes``; each value is the ``reason`` of
    the audit event and of the ``hardenkit.auth.failures`` metric. A token the verifier
    refuses carries the verifier's own reason (``bad_signature``, ``expired``...).
    """

    MISSING = "missing"
    AMBIGUOUS_CREDENTIALS = "ambiguous_credentials"
    HEADER_TOO_LARGE = "header_too_large"
    MALFORMED_HEADER = "malformed_header"
    NO_KEY_SOURCE = "no_key_source"
    MISSING_API_KEY = "missing_api_key"
    BAD_API_KEY = "bad_api_key"
    TENANT_NOT_SELECTED = "tenant_not_selected"
    TENANT_STATUS_UNAVAILABLE = "tenant_status_unavailable"
    TENANT_INACTIVE = "tenant_inactive"
    TENANT_HEADER_MISMATCH = "tenant_header_mismatch"
    TENANT_PATH_MISMATCH = "tenant_path_mismatch"
    TENANT_QUERY_MISMATCH = "tenant_query_mismatch"
    CONFLICTING_TENANT_HEADERS = "conflicting_tenant_headers"
    CONFLICTING_TENANT_REQUESTS = "conflicting_tenant_requests"
    MISSING_ROLES = "missing_roles"
    MISSING_SCOPES = "missing_scopes"


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

    Attributes:
        retry_after: Seconds until the key set may be fetched again (the refetch
            cooldown left), sent as ``Retry-After``; ``None`` when unknown.
    """

    def __init__(self, retry_after: float | None = None) -> None:
        super().__init__("keys_unavailable")
        self.retry_after = retry_after
