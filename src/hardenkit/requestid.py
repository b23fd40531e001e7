"""Request id middleware: accept a well-formed incoming id or make one, echo it everywhere.

An incoming ``X-Request-ID`` is kept only when it comes from a caller whose ids are trusted
(``trust``: ``any`` caller, only trusted ``proxies``, or ``none``) and fully matches
``[A-Za-z0-9._:-]{8,128}`` (a canonical UUID matches too); anything else (an untrusted
caller's id, too long, too short, control characters, log-injection attempts) is replaced
by a fresh id, and the replacement is logged without the rejected value. The response
always carries the id actually used, never the one that was refused. The id is put in
:data:`hardenkit.context.request_id_var` for log lines and error bodies, and set on every
response (WebSocket handshake refusals included), including 500s produced further in.
A W3C ``traceparent`` trace id, when valid and from a caller whose ids are trusted (the
same rule), is recorded alongside; an untrusted caller's is ignored.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from typing import Literal, get_args

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hardenkit.context import (
    FACTS_KEY,
    REQUESTS,
    is_last_body,
    request_id_var,
    send_last,
    trace_id_var,
)
from hardenkit.proxies import TrustedProxies

__all__ = ["RequestIdMiddleware", "RequestIdTrust", "generate_request_id", "is_valid_request_id"]

RequestIdTrust = Literal["any", "proxies", "none"]
"""Whose incoming id is kept: ``any`` caller, trusted ``proxies`` only, or ``none``."""

_VALID_ID = re.compile(rb"[A-Za-z0-9._:\-]{8,128}")
_TRACEPARENT = re.compile(rb"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_ZERO_TRACE_ID = b"0" * 32
# The messages that open a response: HTTP, an accepted WebSocket, and a refused handshake
# answered over the ``websocket.http.response`` extension (a 401/429 problem).
_START_TYPES = frozenset(
    {"http.response.start", "websocket.accept", "websocket.http.response.start"}
)

_logger = structlog.get_logger("hardenkit.requestid")


def generate_request_id() -> str:
    """Return a new request id: 32 lowercase hex characters, 128 random bits."""
    return os.urandom(16).hex()


def is_valid_request_id(value: str | bytes) -> bool:
    """Return whether ``value`` would be accepted as an incoming request id."""
    raw = value.encode("latin-1", "replace") if isinstance(value, str) else value
    return _VALID_ID.fullmatch(raw) is not None


def _trace_id(traceparent: bytes) -> str | None:
    match = _TRACEPARENT.fullmatch(traceparent.strip())
    if match is None or match.group(1) == b"ff" or match.group(2) == _ZERO_TRACE_ID:
        return None
    return match.group(2).decode()


class RequestIdMiddleware:
    """Pure ASGI middleware that gives every request an id and echoes it on the response.

    Args:
        app: The ASGI application to wrap.
        header_name: Header read from requests and set on responses.
        generator: Makes a new id when none (or an invalid one) arrived.
        trust: Whose valid incoming id is kept: ``"any"`` caller, only a directly
            connected peer in ``trusted_proxies`` (``"proxies"``), or ``"none"`` (always a
            fresh id). Default: ``"proxies"`` (with no ``trusted_proxies``, no caller's
            id is kept), or ``"none"`` when ``trust_incoming=False``; ``install()`` uses
            ``HARDENKIT_REQUEST_ID_TRUST``, of the same default.
        trusted_proxies: The proxies whose ids are kept under ``trust="proxies"``.
        trust_incoming: Older spelling: ``False`` is ``trust="none"``.

    Raises:
        ValueError: An invalid header name or ``trust`` value.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        header_name: str = "X-Request-ID",
        generator: Callable[[], str] = generate_request_id,
        trust: RequestIdTrust | None = None,
        trusted_proxies: TrustedProxies | Iterable[str] = (),
        trust_incoming: bool = True,
    ) -> None:
        if not header_name or not re.fullmatch(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+", header_name):
            raise ValueError(f"header_name {header_name!r} is not a valid HTTP header name")
        if trust is None:
            # As HARDENKIT_REQUEST_ID_TRUST: a client choosing the id its requests are
            # logged and answered under (a victim's) is opted into, never the default.
            trust = "proxies" if trust_incoming else "none"
        if trust not in get_args(RequestIdTrust):
            raise ValueError(
                f"HARDENKIT_REQUEST_ID_TRUST: {trust!r} is not one of "
                f"{', '.join(get_args(RequestIdTrust))}"
            )
        self.app = app
        self.header_name = header_name
        self._header_key = header_name.lower().encode("latin-1")
        self.generator = generator
        self.trust: RequestIdTrust = trust
        self.trusted_proxies = (
            trusted_proxies
            if isinstance(trusted_proxies, TrustedProxies)
            else TrustedProxies(trusted_proxies)
        )

    @property
    def trust_incoming(self) -> bool:
        """Whether some caller's incoming id can be kept."""
        return self.trust != "none"

    def _trusts_caller(self, scope: Scope) -> bool:
        if self.trust != "proxies":
            return self.trust == "any"
        client = scope.get("client")
        return self.trusted_proxies.trusts_client(client)

    def _incoming(
        self, scope: Scope
    ) -> tuple[str | None, str | None, list[tuple[str, int]] | None]:
        """The caller's request id and trace id where kept, and why ids were replaced."""
        request_id: str | None = None
        trace_id: str | None = None
        header_key = self._header_key
        trusted: bool | None = None  # whether this caller's id may be kept, asked once
        replaced: list[tuple[str, int]] | None = None  # none on almost every request
        for name, value in scope["headers"]:
            if name == header_key:
                if trusted is None:
                    trusted = self._trusts_caller(scope)
                if trusted and _VALID_ID.fullmatch(value) is not None:
                    request_id = value.decode("ascii")
                else:  # logged once this request's own id is set, which the line carries
                    if replaced is None:
                        replaced = []
                    replaced.append(("not trusted" if not trusted else "malformed", len(value)))
            elif name == b"traceparent":
                # A trace id files requests as surely as a request id: the same trust.
                if trusted is None:
                    trusted = self._trusts_caller(scope)
                if trusted:
                    trace_id = _trace_id(value)
        return request_id, trace_id, replaced

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection."""
        scope_type = scope["type"]
        if scope_type not in REQUESTS:
            await self.app(scope, receive, send)
            return

        request_id, trace_id, replaced = self._incoming(scope)
        if request_id is None:
            request_id = self.generator()

        # The first hardenkit layer of this request (install()'s outermost) sends the last
        # message clean itself rather than through own_facts: no extra coroutine.
        first = FACTS_KEY not in scope
        scope[FACTS_KEY] = True
        id_token = request_id_var.set(request_id)
        trace_token = trace_id_var.set(trace_id)
        if replaced is not None:
            for reason, length in replaced:
                _logger.info(
                    "request_id_replaced", header=self.header_name, reason=reason, length=length
                )
        encoded = (self._header_key, request_id.encode("ascii"))

        async def send_with_id(message: Message) -> None:
            if message["type"] in _START_TYPES:
                header_key = self._header_key
                headers = [item for item in message.get("headers", ()) if item[0] != header_key]
                headers.append(encoded)
                message["headers"] = headers
            elif first and is_last_body(message):
                await send_last(send, message)  # uvicorn may start the next request in it
                return
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            trace_id_var.reset(trace_token)
            request_id_var.reset(id_token)
