"""structlog processors: request context in every event, and redaction before rendering."""

from __future__ import annotations

import re
import sys
import traceback
from typing import Any

from structlog.typing import EventDict

from hardenkit.context import client_ip_var, principal_var, request_id_var, trace_id_var
from hardenkit.logs.redactor import Redactor, get_default_redactor

__all__ = ["RedactingProcessor", "add_request_context", "drop_color_duplicates"]

_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def add_request_context(_logger: Any, _method_name: str, event_dict: EventDict) -> EventDict:
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


class RedactingProcessor:
    """structlog processor that redacts the whole event; place it just before the renderer.

    An ``exc_info`` still in the event (no ``format_exc_info`` / ``dict_tracebacks`` ran
    before) is rendered here as plain text without locals and redacted, so no renderer
    after this processor can print an unredacted traceback.

    Args:
        redactor: The engine; the process default (set by
            :func:`hardenkit.configure_logging`) when omitted, looked up per event.
    """

    def __init__(self, redactor: Redactor | None = None) -> None:
        self.redactor = redactor

    def __call__(self, _logger: Any, _method_name: str, event_dict: EventDict) -> EventDict:
        """Return the redacted event."""
        redactor = self.redactor or get_default_redactor()
        exc_info = event_dict.pop("exc_info", None)
        if exc_info:
            event_dict["exception"] = _format_exception(exc_info)
        return redactor.redact_event(event_dict)


def _format_exception(exc_info: Any) -> str:
    if exc_info is True:
        exc_info = sys.exc_info()
    elif isinstance(exc_info, BaseException):
        exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
    if not isinstance(exc_info, tuple) or exc_info[0] is None:
        return "(no exception)"
    return "".join(traceback.format_exception(*exc_info))


def drop_color_duplicates(_logger: Any, _method_name: str, event_dict: EventDict) -> EventDict:
    """Drop uvicorn's ``color_message`` and any other ANSI-coloured copy of another field.

    uvicorn passes ``extra={"color_message": ...}`` (the message template with terminal
    colour codes) next to the plain message; copied into a JSON line it repeats the event
    with escape sequences in it. A string field holding ANSI escapes is dropped when,
    without them, it equals another field or the record's message template.
    """
    event_dict.pop("color_message", None)
    coloured = [
        name for name, value in event_dict.items() if type(value) is str and "\x1b[" in value
    ]
    if not coloured:
        return event_dict
    plain = {
        value for name, value in event_dict.items() if type(value) is str and name not in coloured
    }
    record = event_dict.get("_record")
    template = getattr(record, "msg", None)
    if isinstance(template, str):
        plain.add(template)
    for name in coloured:
        if _ANSI_ESCAPE.sub("", event_dict[name]) in plain:
            del event_dict[name]
    return event_dict
