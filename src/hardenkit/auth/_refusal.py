"""An auth decision to refuse: what the response says and what the audit event records.

Every auth refusal (the middleware's, an API-key guard's, ``require_roles`` /
``require_scopes``) is an :class:`AuthRefusedError` turned into a
:class:`~hardenkit.errors.Refusal`, and recorded by :func:`record_refusal` where it is
sent (or let through in ``report_only``), never where it is built.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hardenkit.auth.errors import PublicReason, RefusalReason, TokenRejectedError
from hardenkit.auth.principal import Principal
from hardenkit.errors import ErrorCode, Refusal
from hardenkit.logs.audit import AuditEventType, audit
from hardenkit.telemetry import auth_failures, tenant_mismatches

__all__ = ["AuthRefusedError", "record_refusal", "unauthenticated", "unavailable"]

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
        challenge: The ``WWW-Authenticate`` value, when not the one the reason implies
            (a ``401`` always challenges; a ``403`` only when given one).
        retry_after: Seconds a ``503`` asks the client to wait (``None``: shortly).
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
        challenge: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(reason)
        self.retry_after = retry_after
        self.status = status
        self.code = code
        self.reason = reason
        self.detail = detail
        self.public_reason: PublicReason = public_reason
        self.event_type = event_type
        self.subject = subject
        self.tenant = tenant
        self.principal = principal
        self.challenge = challenge
        self.details: dict[str, Any] = {}

    def refusal(self, on_sent: Callable[[], None] | None = None) -> Refusal:
        """The response: a ``401`` challenges, a ``503`` asks for a retry."""
        if self.status == 503:
            return Refusal.retry_later(
                self.status, self.code, self.detail, wait=self.retry_after, on_sent=on_sent
            )
        headers: tuple[tuple[str, str], ...] = ()
        if self.challenge is not None:
            headers = (("WWW-Authenticate", self.challenge),)
        elif self.status == 401:
            headers = (("WWW-Authenticate", self._challenge()),)
        return Refusal(self.status, self.code, self.detail, headers=headers, on_sent=on_sent)

    def _challenge(self) -> str:
        if self.reason in _API_KEY_REASONS:
            return "ApiKey"
        if self.public_reason == "missing":
            return 'Bearer realm="api"'
        description = DESCRIPTIONS[self.public_reason]
        return f'Bearer realm="api", error="invalid_token", error_description="{description}"'


def record_refusal(refused: AuthRefusedError, path: str, mode: str = "enforced") -> None:
    """Count and audit one auth refusal: sent (``enforced``) or let through (``report_only``)."""
    outcome = "denied" if mode == "enforced" else "report_only_allowed"
    auth_failures.add(1, {"reason": refused.reason, "mode": mode})
    if refused.event_type is AuditEventType.TENANT_MISMATCH:
        tenant_mismatches.add(1, {"source": refused.details["requested_from"], "mode": mode})
    audit(
        refused.event_type,
        outcome,
        # The enum's value: the redactor hides a member named like a secret (BAD_API_KEY).
        reason=str(refused.reason),
        actor=refused.subject,
        tenant=refused.tenant,
        details={"path": path, "status": refused.status, **refused.details},
    )


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
