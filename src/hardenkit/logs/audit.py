"""Audit events: one JSON line per security decision, on the ``hardenkit.audit`` logger.

Every piece of hardenkit reports its security decisions here (a refused token, a tenant
mismatch, a rate-limit refusal, a breaker opening, a rejected signature, a configuration
warning). Each event is an :class:`AuditEvent` with a fixed set of fields, emitted as one
structured line (JSON in production, and always JSON in the optional daily audit file,
see ``HARDENKIT_LOG_AUDIT_FILE``), redacted like every other line, and added as an event
on the current OpenTelemetry span when one is recording.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

import structlog

from hardenkit.context import client_ip_var, principal_var, request_id_var
from hardenkit.telemetry import add_span_event

__all__ = ["AUDIT_LOGGER_NAME", "AuditEvent", "AuditEventType", "audit"]

AUDIT_LOGGER_NAME = "hardenkit.audit"
"""The logger audit events are emitted on; attach a handler to it to ship them apart."""

_logger = structlog.get_logger(AUDIT_LOGGER_NAME)


class AuditEventType(StrEnum):
    """What kind of security decision an audit event records."""

    AUTH = "auth"
    TENANT_MISMATCH = "tenant_mismatch"
    RATE_LIMITED = "rate_limited"
    BREAKER_STATE = "breaker_state"
    CONFIG = "config"
    SIGNATURE = "signature"


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One security decision, as written to the audit log.

    Attributes:
        event_type: The kind of decision (an :class:`AuditEventType` value, or your own).
        outcome: ``"denied"``, ``"allowed"``, ``"opened"``, ``"closed"``...
        reason: A short stable reason (``"expired"``, ``"tenant_mismatch"``), as a plain
            string: it is redacted like any field, and the redactor hides an enum member
            whose name looks secret (``BAD_API_KEY``).
        actor: The subject acting, when known.
        tenant: The tenant claimed or verified, when known.
        request_id: The request the decision was made in, when any.
        client_ip: The client address as resolved through trusted proxies, when any.
        details: Extra fields (redacted like everything logged).
    """

    event_type: str
    outcome: str
    reason: str | None = None
    actor: str | None = None
    tenant: str | None = None
    request_id: str | None = None
    client_ip: str | None = None
    details: Mapping[str, Any] | None = field(default=None)

    def as_dict(self) -> dict[str, Any]:
        """Return the event's fields as the log line carries them."""
        fields = asdict(self)
        fields["details"] = dict(self.details) if self.details else None
        return fields


def audit(
    event_type: AuditEventType | str,
    outcome: str,
    *,
    reason: str | None = None,
    actor: str | None = None,
    tenant: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> AuditEvent:
    """Emit one audit event and return it.

    Request id, client ip, actor and tenant come from the request context when not
    given. The line is logged at WARNING on ``hardenkit.audit`` with ``audit=true``;
    ``configure_logging`` keeps that logger enabled whatever ``HARDENKIT_LOG_LEVEL`` says.

    Args:
        event_type: The kind of decision (:class:`AuditEventType`).
        outcome: ``"denied"``, ``"allowed"``, ``"opened"``...
        reason: A short stable reason (``"expired"``, ``"tenant_mismatch"``), as a plain
            string: it is redacted like any field, and the redactor hides an enum member
            whose name looks secret (``BAD_API_KEY``).
        actor: The subject, when known; defaults to the verified principal's.
        tenant: The tenant claimed or verified; defaults to the principal's.
        details: Extra fields. Never put a credential here: it is redacted, but it
            should not be there in the first place.

    Returns:
        The event as emitted.
    """
    principal = principal_var.get()
    if principal is not None:
        actor = actor if actor is not None else principal.subject
        tenant = tenant if tenant is not None else principal.tenant
    event = AuditEvent(
        event_type=str(event_type),
        outcome=outcome,
        reason=reason,
        actor=actor,
        tenant=tenant,
        request_id=request_id_var.get(),
        client_ip=client_ip_var.get(),
        details=dict(details) if details else None,
    )
    _logger.warning("audit", audit=True, **event.as_dict())
    attributes = {
        "hardenkit.audit.event_type": event.event_type,
        "hardenkit.audit.outcome": outcome,
    }
    if reason is not None:
        attributes["hardenkit.audit.reason"] = reason
    add_span_event("hardenkit.audit", attributes)
    return event
