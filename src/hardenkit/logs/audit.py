"""Audit events: one JSON line per security decision, on the ``hardenkit.audit`` logger."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

import structlog

from hardenkit.context import client_ip_var, principal_var, request_id_var

__all__ = ["AuditEventType", "audit"]

_logger = structlog.get_logger("hardenkit.audit")


class AuditEventType(StrEnum):
    """What kind of security decision an audit event records."""

    AUTH = "auth"
    TENANT_MISMATCH = "tenant_mismatch"
    RATE_LIMITED = "rate_limited"
    BREAKER_STATE = "breaker_state"
    CONFIG = "config"
    SIGNATURE = "signature"


def audit(
    event_type: AuditEventType | str,
    outcome: str,
    *,
    reason: str | None = None,
    actor: str | None = None,
    tenant: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> None:
    """Emit one audit event.

    Args:
        event_type: The kind of decision (:class:`AuditEventType`).
        outcome: ``"denied"``, ``"allowed"``, ``"opened"``...
        reason: A short stable reason (``"expired"``, ``"tenant_mismatch"``).
        actor: The subject, when known; defaults to the verified principal's.
        tenant: The tenant claimed or verified; defaults to the principal's.
        details: Extra fields. Never put a credential here: it is redacted, but it
            should not be there in the first place.
    """
    principal = principal_var.get()
    if principal is not None:
        actor = actor if actor is not None else principal.subject
        tenant = tenant if tenant is not None else principal.tenant
    _logger.warning(
        "audit",
        audit=True,
        event_type=str(event_type),
        outcome=outcome,
        reason=reason,
        actor=actor,
        tenant=tenant,
        request_id=request_id_var.get(),
        client_ip=client_ip_var.get(),
        details=dict(details) if details else None,
    )
