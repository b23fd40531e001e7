"""Structured logging: request context in every line, redaction, audit events.

One engine (:class:`Redactor`) behind every integration: the structlog processor
(:class:`RedactingProcessor`), the stdlib filter (:class:`RedactingLogFilter`), the
Sentry hook (:func:`sentry_before_send`) and :func:`configure_logging`.
"""

from hardenkit.logs.audit import AUDIT_LOGGER_NAME, AuditEvent, AuditEventType, audit
from hardenkit.logs.processors import (
    RedactingProcessor,
    add_request_context,
    drop_color_duplicates,
)
from hardenkit.logs.redactor import (
    REDACTED,
    Redactor,
    get_default_redactor,
    set_default_redactor,
)
from hardenkit.logs.sentry import redacting_before_send, sentry_before_send
from hardenkit.logs.setup import configure_logging
from hardenkit.logs.stdlib import RedactingLogFilter

__all__ = [
    "AUDIT_LOGGER_NAME",
    "REDACTED",
    "AuditEvent",
    "AuditEventType",
    "RedactingLogFilter",
    "RedactingProcessor",
    "Redactor",
    "add_request_context",
    "audit",
    "configure_logging",
    "drop_color_duplicates",
    "get_default_redactor",
    "redacting_before_send",
    "sentry_before_send",
    "set_default_redactor",
]
