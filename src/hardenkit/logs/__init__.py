"""Structured logging: request context in every line, redaction, audit events."""

from hardenkit.logs.audit import AuditEventType, audit
from hardenkit.logs.processors import add_request_context

__all__ = ["AuditEventType", "add_request_context", "audit"]
