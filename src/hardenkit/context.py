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
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

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
    if current is not None and current < candidate and not _finished_requests(current):
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
# The facts above are context variables. uvicorn (httptools and h11 alike) starts a
# pipelined HTTP/1.1 request from inside the previous request's last ``send``, so the new
# request's task begins with a copy of that request's context: its principal, request id,
# client ip and deadline. Each layer sets the fact it owns, but only for the part of the
# request it wraps: outside the auth layer the previous caller's principal would name
# this request in log lines and audit events, a standalone rate limit would key it on the
# previous client, and a route exempt from the timeout would run under the previous
# request's deadline.
#
# So facts set while a request is served (by the layers, `deadline()`,
# `WorkContext.applied()`) go through `set_fact`, which notes the value in the request's
# notes, and the first hardenkit layer a request reaches (`own_facts`, or `begin_facts`
# and `end_facts`) clears every fact still holding a value noted for another request,
# for the whole request, and puts it back when done. The notes close when the request's
# last body message is sent (before it goes out: uvicorn starts the next pipelined
# request inside that send) or its first layer exits: what runs after, the next request
# included, notes nothing there, so a fact the application sets outside hardenkit's
# layers (its own authentication setting ``principal_var``, a `deadline()` around the
# app) is its own, and kept.
#
# Notes still open belong to a request still being served: this one is an app called
# in-process from its handler, or a mounted app behind a middleware that rebuilt the
# scope. Its deadline then bounds this request too (a budget flows down); the identity
# facts are cleared (the called app decides its own caller).
#
# The names below are for the layers (not exported: not in __all__).

FACTS_KEY: Final = "hardenkit.facts"
"""In a request's scope once its first hardenkit layer took its facts in hand."""

REQUESTS: Final = frozenset({"http", "websocket"})
"""The scope types that are requests (and have facts)."""

MAX_NOTES: Final = 128
"""Notes kept per request (two per fact set): the layers' own come first. Past it a
request that sets facts in a loop (``deadline()`` per outbound call, a long WebSocket
session) notes no more, rather than grow without bound."""


class Notes(list[Any]):
    """Facts and values, alternating: ``[fact, value, fact, value, ...]``.

    Every value, not the last: the request's last send may happen where an outer layer's
    value is current again (a nested ``install()``'s layers set their own, in a child
    task under a user's ``BaseHTTPMiddleware`` too; an outer timeout answers after the
    inner layers unwound). One list per request, shared by every copy of its context.
    """

    __slots__ = ("closed",)
    closed: bool
    """Set when the request's last body message goes out, or its first layer exits."""


_noted: ContextVar[Notes | None] = ContextVar("hardenkit_facts_noted", default=None)
"""The notes of the request being served (see above)."""


def set_fact(fact: ContextVar[T], value: T) -> Token[T]:
    """Set ``fact``; noted as this request's while its notes are open (see above)."""
    noted = _noted.get()
    if noted is not None and not noted.closed and len(noted) < MAX_NOTES:
        noted += (fact, value)
    return fact.set(value)


Cleared = list[tuple[ContextVar[Any], Token[Any]]]
Begun = tuple[Notes, Token[Notes | None], Cleared | None]
"""What :func:`end_facts` puts back."""


def begin_facts(scope: Scope) -> Begun:
    """Take this request's facts in hand (the first hardenkit layer, see above).

    Clears every fact still holding a value noted for the request this task's context
    was copied from, and starts this request's notes. Pair with :func:`end_facts` in a
    ``finally``; :func:`close_facts` when the last body message is sent.
    """
    scope[FACTS_KEY] = True
    left = _noted.get()  # another request's: the one this task's context was copied from
    notes = Notes()  # no __init__ of its own: one per request, on the hot path
    notes.closed = False
    return notes, _noted.set(notes), _clear(left) if left else None


def _clear(left: Notes) -> Cleared:
    budget = not left.closed  # a request still being served: its deadline bounds this one
    cleared: Cleared = []
    for index in range(0, len(left), 2):
        fact: ContextVar[Any] = left[index]
        if budget and fact is deadline_var:
            continue
        current = fact.get()
        if current is not None and current is left[index + 1]:
            cleared.append((fact, fact.set(None)))  # None from now on: cleared once
    return cleared


def _finished_requests(deadline: float) -> bool:
    """Whether ``deadline`` is one hardenkit set for a request that has ended.

    A pipelined request's task starts with it (see above): code that runs before the
    request's first hardenkit layer, a ``deadline()`` around the app, is not held to it.
    """
    noted = _noted.get()
    if noted is None or not noted.closed:
        return False
    return any(
        noted[index] is deadline_var and noted[index + 1] is deadline
        for index in range(0, len(noted), 2)
    )


def close_facts(begun: Begun) -> None:
    """The request's last body message is about to be sent: its notes are complete."""
    begun[0].closed = True


def end_facts(begun: Begun) -> None:
    """Close the notes; put back what :func:`begin_facts` changed (an in-process caller's)."""
    notes, token, cleared = begun
    notes.closed = True
    _noted.reset(token)
    if cleared:
        for fact, fact_token in reversed(cleared):
            fact.reset(fact_token)


def is_last_body(message: Message) -> bool:
    """Whether ``message`` ends an HTTP response (uvicorn may start the next one in it)."""
    return message["type"] == "http.response.body" and not message.get("more_body", False)


async def own_facts(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    """Serve the request with ``app`` (the calling layer), with no facts of another's.

    For a layer that found no :data:`FACTS_KEY` in the scope: the first hardenkit layer of
    this request. ``app`` is called again with the key set.
    """
    begun = begin_facts(scope)

    async def send_closing(message: Message) -> None:
        if is_last_body(message):
            close_facts(begun)
        await send(message)

    try:
        await app(scope, receive, send_closing)
    finally:
        end_facts(begun)
