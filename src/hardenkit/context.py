"""Per-request facts, readable from anywhere while the request is being served.

The outer middleware writes them (request id, client ip, deadline, principal); everything
inside reads them: exception handlers, log processors, outbound calls, background log lines
emitted while the request is in flight. Each fact is its own :class:`contextvars.ContextVar`,
so a piece that is used alone sets only what it owns. The first hardenkit layer of a
request sends the response's last message with these facts cleared, so a pipelined
HTTP/1.1 request, which uvicorn starts inside that send, inherits none of them (see
below).
"""

from __future__ import annotations

import contextvars
import time
import types
from collections.abc import Generator
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

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


# A request's facts are its own: none of another request's.
#
# The facts above are context variables, and a task starts with a copy of the context
# it was created in. uvicorn (httptools and h11 alike) starts a pipelined HTTP/1.1
# request from inside the previous request's last ``send``, so that request's task
# would begin with the previous one's principal, request id, client ip and deadline,
# and with whatever the application set around the stack: outside the auth layer the
# previous caller would name this request in log lines and audit events, a standalone
# rate limit would key it on the previous client, a route exempt from the timeout would
# run under the previous request's deadline, and the application's own authentication,
# if it sets ``principal_var`` only for a valid credential, would let an anonymous
# request through as the previous caller.
#
# So the first hardenkit layer a request reaches (the one that finds no
# ``hardenkit.facts`` key in the scope: ``own_facts``, or the request id layer under
# ``install()``) sends the response's last body message in a copy of the context with
# these facts cleared (``send_last``), whoever set them, hardenkit or the application
# around the stack: what the server starts from inside that send starts with none of
# them. Everything else in the context stays (a tracing span, a logger's bound
# variables), so middleware around the stack still sees its own on the last message.
# A server that starts the next request elsewhere starts it from its own context.
# A response whose last message never passes through hardenkit's first layer (a
# middleware around the stack answering on its own, or a ``BaseHTTPMiddleware`` around
# it, which sends from its own task) is not covered: facts the application sets around
# the stack are then its to clear (set them for every request, ``None`` when anonymous).
#
# The names below are for the layers (not exported: not in __all__).

FACTS_KEY: Final = "hardenkit.facts"
"""In a request's scope once its first hardenkit layer has seen it."""

REQUESTS: Final = frozenset({"http", "websocket"})
"""The scope types that are requests (and have facts)."""


_BODIES: Final = frozenset({"http.response.body", "http.response.zerocopysend"})


def is_last_body(message: Message) -> bool:
    """Whether ``message`` ends an HTTP response (uvicorn may start the next one in it).

    A body without ``more_body``, or the message of a server extension that sends the
    body itself: ``http.response.pathsend`` (always the last), ``zerocopysend``.
    """
    kind: str = message["type"]
    if kind in _BODIES:
        return not message.get("more_body", False)
    return kind == "http.response.pathsend"


_FACTS: Final = (request_id_var, trace_id_var, client_ip_var, principal_var, deadline_var)


async def send_last(send: Send, message: Message) -> None:
    """``await send(message)`` in a copy of the context without the facts (see above)."""
    context = contextvars.copy_context()
    context.run(_clear_facts)
    await _in_context(context, send(message).__await__())


def _clear_facts() -> None:
    for fact in _FACTS:
        if fact.get() is not None:
            fact.set(None)


@types.coroutine
def _in_context(
    context: contextvars.Context, step: Generator[Any, Any, None]
) -> Generator[Any, Any, None]:
    """Drive ``step`` in the running task, each of its steps run in ``context``."""
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            if error is None:
                yielded = context.run(step.send, value)
            else:
                yielded = context.run(step.throw, error)
        except StopIteration:
            return
        try:
            value, error = (yield yielded), None
        except BaseException as thrown:  # noqa: BLE001 - every throw goes to the send
            value, error = None, thrown


async def own_facts(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    """Serve the request with ``app`` (the calling layer), its last message sent clean.

    For a layer that found no :data:`FACTS_KEY` in the scope: the first hardenkit layer of
    this request. ``app`` is called again with the key set.
    """
    scope[FACTS_KEY] = True

    async def send_clean(message: Message) -> None:
        if is_last_body(message):
            await send_last(send, message)
        else:
            await send(message)

    await app(scope, receive, send_clean)
