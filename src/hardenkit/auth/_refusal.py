"""An auth decision to refuse: what the response says and what the audit event records."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hardenkit.auth.errors import PublicReason, RefusalReason, TokenRejectedError
from hardenkit.auth.principal import Principal
from hardenkit.errors import ErrorCode, Refusal
from hardenkit.logs.audit import AuditEventType

__all__ = ["AuthRefusedError", "unauthenticated", "unavailable"]

DESCRIPTIONS: dict[PublicReason, str] = {
    "missing": "Authentication is required.",
    "invalid": "The access token is invalid.",
    "expired": "The access token expired.",
}
# Reasons that deserve their own words: the client can fix them.
_REASON_DETAILS = {
    "invalid_tenant_id": "The access token's tenant id is not a valid tenant id "
    "(letters, digits and . _ - : @ only).",
}
_API_KEY_REASONS = frozenset({RefusalReason.MISSING_API_KEY, RefusalReason.BAD_API_KEY})


class AuthRefusedError(Exception):
    """A decision to refuse, with everything the response and the audit event need.

    Attributes:
        principal: The verified principal when the refusal came after verification;
            ``report_only`` lets the request through with it.
        details: Extra audit details (the tenant asked for, and where).
    """

    def __init__(
        self,
        status: int,
        code: ErrorCode,
        reason: str,
        detail: str,
        *,
        public_reason: PublicReason = "invalid",
        event_type: AuditEventType = AuditEventType.AUTH,
        subject: str | None = None,
        tenant: str | None = None,
        principal: Principal | None = None,
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.code = code
        self.reason = reason
        self.detail = detail
        self.public_reason: PublicReason = public_reason
        self.event_type = event_type
        self.subject = subject
        self.tenant = tenant
        self.principal = principal
        self.details: dict[str, Any] = {}

    def refusal(self, on_sent: Callable[[], None] | None = None) -> Refusal:
        """The response: a ``401`` challenges, a ``503`` asks for a retry."""
        if self.status == 503:
            return Refusal.retry_later(self.status, self.code, self.detail, on_sent=on_sent)
        headers: tuple[tuple[str, str], ...] = ()
        if self.status == 401:
            headers = (("WWW-Authenticate", self._challenge()),)
        return Refusal(self.status, self.code, self.detail, headers=headers, on_sent=on_sent)

    def _challenge(self) -> str:
        if self.reason in _API_KEY_REASONS:
            return "ApiKey"
        if self.public_reason == "missing":
            return 'Bearer realm="api"'
        description = DESCRIPTIONS[self.public_reason]
        return f'Bearer realm="api", error="invalid_token", error_description="{description}"'


def unauthenticated(rejected: TokenRejectedError, detail: str | None = None) -> AuthRefusedError:
    """The ``401`` for a rejected credential."""
    return AuthRefusedError(
        401,
        ErrorCode.AUTHENTICATION_ERROR,
        rejected.reason,
        detail or _REASON_DETAILS.get(rejected.reason, DESCRIPTIONS[rejected.public_reason]),
        public_reason=rejected.public_reason,
    )


def unavailable(reason: str, detail: str, **facts: Any) -> AuthRefusedError:
    """The ``503`` for a check that cannot be made now (keys, tenant status)."""
    return AuthRefusedError(503, ErrorCode.SERVICE_UNAVAILABLE, reason, detail, **facts)
