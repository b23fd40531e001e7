"""structlog processors that add hardenkit's request context to every event."""

from __future__ import annotations

from typing import Any

from hardenkit.context import client_ip_var, principal_var, request_id_var, trace_id_var

__all__ = ["add_request_context"]


def add_request_context(
    _logger: Any, _method_name: str, event_dict: dict[str, Any]
) -> dict[str, Any]:
    """Add request id, trace id, client ip, tenant and subject to the event, when known.

    Values already in the event win, so a line can speak of another request explicitly.
    Reading context variables costs nothing per request: no binding happens in middleware.
    """
    request_id = request_id_var.get()
    if request_id is not None:
        event_dict.setdefault("request_id", request_id)
        trace_id = trace_id_var.get()
        if trace_id is not None:
            event_dict.setdefault("trace_id", trace_id)
        client_ip = client_ip_var.get()
        if client_ip is not None:
            event_dict.setdefault("client_ip", client_ip)
    principal = principal_var.get()
    if principal is not None:
        event_dict.setdefault("subject", principal.subject)
        if principal.tenant is not None:
            event_dict.setdefault("tenant", principal.tenant)
    return event_dict
