"""Per-request facts, readable from anywhere while the request is being served.

The outer middleware writes them (request id, client ip, deadline, principal); everything
inside reads them: exception handlers, log processors, outbound calls, background log lines
emitted while the request is in flight. Each fact is its own :class:`contextvars.ContextVar`,
so a piece that is used alone sets only what it owns.
"""

from __future__ import annotations

import time
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hardenkit.auth.principal import Principal

__all__ = [
    "client_ip_var",
    "deadline_var",
    "get_client_ip",
    "get_deadline",
    "get_principal",
    "get_request_id",
    "get_trace_id",
    "principal_var",
    "remaining_time",
    "request_id_var",
    "set_deadline",
    "trace_id_var",
]

request_id_var: ContextVar[str | None] = ContextVar("hardenkit_request_id", default=None)
"""The validated or generated id of the request being served."""

trace_id_var: ContextVar[str | None] = ContextVar("hardenkit_trace_id", default=None)
"""The W3C trace id from an incoming ``traceparent``, when one arrived."""

client_ip_var: ContextVar[str | None] = ContextVar("hardenkit_client_ip", default=None)
"""The client address, after trusted-proxy resolution."""

principal_var: ContextVar[Principal | None] = ContextVar("hardenkit_principal", default=None)
"""The verified caller, set by the auth middleware."""

deadline_var: ContextVar[float | None] = ContextVar("hardenkit_deadline", default=None)
"""Absolute :func:`time.monotonic` instant by which the current work must finish."""


def get_request_id() -> str | None:
    """Return the current request id, or ``None`` outside a request."""
    return request_id_var.get()


def get_trace_id() -> str | None:
    """Return the incoming W3C trace id, or ``None``."""
    return trace_id_var.get()


def get_client_ip() -> str | None:
    """Return the resolved client ip, or ``None``."""
    return client_ip_var.get()


def get_principal() -> Principal | None:
    """Return the verified principal, or ``None`` when the request is not authenticated."""
    return principal_var.get()


def get_deadline() -> float | None:
    """Return the absolute monotonic deadline of the current work, or ``None``."""
    return deadline_var.get()


def set_deadline(seconds_from_now: float) -> Token[float | None]:
    """Set a deadline ``seconds_from_now``, never later than one already in force.

    A nested deadline can only shrink the budget: an outbound call inside a request with
    2 s left cannot give itself 10 s. Returns the token to pass to
    ``deadline_var.reset`` when the scope ends.
    """
    candidate = time.monotonic() + seconds_from_now
    current = deadline_var.get()
    if current is not None and current < candidate:
        candidate = current
    return deadline_var.set(candidate)


def remaining_time() -> float | None:
    """Return the seconds left before the deadline (never negative), or ``None``."""
    deadline = deadline_var.get()
    if deadline is None:
        return None
    return max(0.0, deadline - time.monotonic())
