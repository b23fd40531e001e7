from __future__ import annotations

import structlog

from hardenkit.auth.principal import Principal
from hardenkit.context import client_ip_var, principal_var, request_id_var, trace_id_var
from hardenkit.logs import AuditEventType, add_request_context, audit


def test_processor_adds_nothing_outside_a_request() -> None:
    assert add_request_context(None, "info", {"event": "x"}) == {"event": "x"}


def test_processor_adds_request_facts_and_principal() -> None:
    tokens = [
        request_id_var.set("req-12345678"),
        trace_id_var.set("4bf92f3577b34da6a3ce929d0e0e4736"),
        client_ip_var.set("203.0.113.9"),
        principal_var.set(Principal(subject="user-1", tenant="acme")),
    ]
    try:
        event = add_request_context(None, "info", {"event": "x", "tenant": "explicit"})
    finally:
        principal_var.reset(tokens[3])
        client_ip_var.reset(tokens[2])
        trace_id_var.reset(tokens[1])
        request_id_var.reset(tokens[0])
    assert event == {
        "event": "x",
        "request_id": "req-12345678",
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
        "client_ip": "203.0.113.9",
        "subject": "user-1",
        "tenant": "explicit",
    }


def test_audit_event_carries_request_facts_and_defaults_actor_to_the_principal() -> None:
    tokens = (request_id_var.set("req-audit-001"), principal_var.set(Principal("svc", "t1")))
    try:
        with structlog.testing.capture_logs() as logs:
            audit(
                AuditEventType.RATE_LIMITED, "denied", reason="auth_rule", details={"rule": "auth"}
            )
    finally:
        principal_var.reset(tokens[1])
        request_id_var.reset(tokens[0])
    [event] = logs
    assert event["event_type"] == "rate_limited"
    assert event["outcome"] == "denied"
    assert event["actor"] == "svc"
    assert event["tenant"] == "t1"
    assert event["request_id"] == "req-audit-001"
    assert event["details"] == {"rule": "auth"}
