"""Per-request facts, readable from anywhere while the request is being served.

The outer middleware writes them (request id, client ip, deadline, principal); everything
inside reads them: exception handlers, log processors, outbound calls, background log lines
emitted while the request is in flight. Each fact is its own :class:`contextvars.ContextVar`,
so a piece that is used alone sets only what it owns. The first hardenkit layer of a
request clears what hardenkit set for another request (a pipelined HTTP/1.1 request
starts in a copy of the previous one's context; see below); a value the application
set itself, outside the layers, is kept.
"""

from __future__ import annotations

import time
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING, Any, Final, TypeVar

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

    from hardenkit.auth.principal import Principal

T = TypeVar("T")

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
    return set_fact(deadline_var, candidate)


def remaining_time() -> float | None:
    """Return the seconds left before the deadline (never negative), or ``None``."""
    deadline = deadline_var.get()
    if deadline is None:
        return None
    return max(0.0, deadline - time.monotonic())


# A request's facts are its own: none that hardenkit set for another request.
#
# The facts above (request id, trace id, client ip, principal,
# deadline) are context variables. uvicorn (httptools and h11 alike) starts a pipelined
# HTTP/1.1 request from inside the previous request's last ``send``, so the new request's
# task begins with a copy of that request's context: its principal, request id, client ip
# and deadline. Each layer sets the fact it owns, but only for the part of the request it
# wraps: outside the auth layer the previous caller's principal would name this request in
# log lines and audit events, a standalone rate limit would key it on the previous client,
# and a route exempt from the timeout would run under the previous request's deadline.
#
# So the layers set facts with `set_fact`, which notes each value in the request's notes
# (a context variable too), and the first hardenkit layer a request reaches
# (`own_facts`, or `begin_facts` and `end_facts`) clears every fact still holding a
# value hardenkit set for another request, for the whole request, and puts it back when
# done (an app called in-process from another's handler hands its caller's facts back
# untouched). A fact the application's own code set outside hardenkit's layers (its own
# authentication setting ``principal_var``, say) is not hardenkit's to clear, and is
# kept.
#
# The names below are for the layers (not exported: not in __all__).

FACTS_KEY: Final = "hardenkit.facts"
"""In a request's scope once its first hardenkit layer took its facts in hand."""

REQUESTS: Final = frozenset({"http", "websocket"})
"""The scope types that are requests (and have facts)."""

Notes = list[Any]
"""Facts and values, alternating: ``[fact, value, fact, value, ...]`` (one list per request,
the fewest objects for the collector)."""

_noted: ContextVar[Notes | None] = ContextVar("hardenkit_facts_noted", default=None)
"""Every value hardenkit set for the request being served, with its fact.

Every value, not the last: the request's last send may happen where an outer layer's
value is current again (a nested ``install()``'s layers set their own, in a child task
under a user's ``BaseHTTPMiddleware`` too; an outer timeout answers after the inner
layers unwound). The notes of one request are one list, shared by every copy of its
context.
"""


def set_fact(fact: ContextVar[T], value: T) -> Token[T]:
    """Set ``fact`` for this request, noted as set by hardenkit (see above)."""
    noted = _noted.get()
    if noted is not None:
        noted += (fact, value)
    return fact.set(value)


Cleared = list[tuple[ContextVar[Any], Token[Any]]]
Begun = tuple[Token[Notes | None], Cleared | None]
"""What :func:`end_facts` puts back."""


def begin_facts(scope: Scope) -> Begun:
    """Take this request's facts in hand (the first hardenkit layer, see above).

    Clears every fact still holding a value hardenkit set for the request this task's
    context was copied from, and starts this request's notes. Pair with
    :func:`end_facts` in a ``finally``.
    """
    scope[FACTS_KEY] = True
    left = _noted.get()  # another request's: the one this task's context was copied from
    return _noted.set([]), _clear(left) if left else None


def _clear(left: Notes) -> Cleared:
    cleared: Cleared = []
    for index in range(0, len(left), 2):
        fact: ContextVar[Any] = left[index]
        current = fact.get()
        if current is not None and current is left[index + 1]:
            cleared.append((fact, fact.set(None)))  # None from now on: cleared once
    return cleared


def end_facts(begun: Begun) -> None:
    """Put back what :func:`begin_facts` changed: the caller's facts, for an in-process call."""
    notes, cleared = begun
    _noted.reset(notes)
    if cleared:
        for fact, token in reversed(cleared):
            fact.reset(token)


async def own_facts(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    """Serve the request with ``app`` (the calling layer), with no facts of another's.

    For a layer that found no :data:`FACTS_KEY` in the scope: the first hardenkit layer of
    this request. ``app`` is called again with the key set.
    """
    begun = begin_facts(scope)
    try:
        await app(scope, receive, send)
    finally:
        end_facts(begun)
