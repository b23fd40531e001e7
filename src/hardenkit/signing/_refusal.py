"""Refusals of signed webhooks and messages: one exception, one audit event, one metric.

Every refusal in this package is built by :func:`refuse` and recorded when it leaves
hardenkit: sent as a response (by the middleware or the exception handler), or raised
out of a public verification method (which calls :meth:`SignatureError.record`). Either
way it is audited (``event_type="signature"``, ``outcome="denied"``) and counted in
``hardenkit.signature.failures`` exactly once, with a stable reason and the key id when
there is one. Neither the signature nor any secret is ever part of the event or the error.
"""

from __future__ import annotations

from typing import Literal

from hardenkit.errors import ErrorCode, HardenError
from hardenkit.logs.audit import AuditEventType, audit
from hardenkit.telemetry import signature_failures

__all__ = ["SignatureError", "SignatureKind", "refuse"]

SignatureKind = Literal["webhook", "message"]


class SignatureError(HardenError):
    """A webhook or message that failed verification; becomes a problem+json response.

    Attributes:
        reason: Short stable reason (``"signature_mismatch"``, ``"timestamp_too_old"``...),
            also used in the audit event and the metric.
        kind: ``"webhook"`` or ``"message"``.
        key_id: The key id the message named, when it was well formed.
    """

    def __init__(
        self,
        code: ErrorCode,
        *,
        status: int,
        reason: str,
        detail: str,
        kind: SignatureKind,
        key_id: str | None = None,
    ) -> None:
        super().__init__(code, status=status, detail=detail)
        self.reason = reason
        self.kind = kind
        self.key_id = key_id
        self._recorded = False
        self.on_sent = self.record

    def record(self) -> None:
        """Audit and count this refusal; only the first call does anything."""
        if self._recorded:
            return
        self._recorded = True
        audit(
            AuditEventType.SIGNATURE,
            "denied",
            reason=self.reason,
            details={"kind": self.kind, "key_id": self.key_id},
        )
        signature_failures.add(1, {"kind": self.kind, "reason": self.reason})


def refuse(
    reason: str,
    detail: str,
    *,
    kind: SignatureKind,
    code: ErrorCode = ErrorCode.SIGNATURE_INVALID,
    status: int = 401,
    key_id: str | None = None,
) -> SignatureError:
    """Return the error to raise; it is recorded when it leaves hardenkit, not here."""
    return SignatureError(
        code, status=status, reason=reason, detail=detail, kind=kind, key_id=key_id
    )
