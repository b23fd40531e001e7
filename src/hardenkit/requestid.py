"""Request id middleware: accept a well-formed incoming id or make one, echo it everywhere.

An incoming ``X-Request-ID`` is kept only when it fully matches ``[A-Za-z0-9._:-]{8,128}``
(a canonical UUID matches too); anything else (too long, too short, control characters,
log-injection attempts) is replaced by a fresh id, and the replacement is logged without
the rejected value. The id is put in :data:`hardenkit.context.request_id_var` for log
lines and error bodies, and set on every response, including 500s produced further in.
A W3C ``traceparent`` trace id, when valid, is recorded alongside.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hardenkit.context import request_id_var, trace_id_var

__all__ = ["RequestIdMiddleware", "generate_request_id", "is_valid_request_id"]

_VALID_ID = re.compile(rb"[A-Za-z0-9._:\-]{8,128}")
_TRACEPARENT = re.compile(rb"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_ZERO_TRACE_ID = b"0" * 32

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
        trust_incoming: Accept a valid incoming id; ``False`` always generates one (for
            edge services that must not let clients choose ids).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        header_name: str = "X-Request-ID",
        generator: Callable[[], str] = generate_request_id,
        trust_incoming: bool = True,
    ) -> None:
        if not header_name or not re.fullmatch(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+", header_name):
            raise ValueError(f"header_name {header_name!r} is not a valid HTTP header name")
        self.app = app
        self.header_name = header_name
        self._header_key = header_name.lower().encode("latin-1")
        self.generator = generator
        self.trust_incoming = trust_incoming

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection."""
        scope_type = scope["type"]
        if scope_type not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return

        request_id: str | None = None
        trace_id: str | None = None
        header_key = self._header_key
        for name, value in scope["headers"]:
            if name == header_key:
                if self.trust_incoming and _VALID_ID.fullmatch(value) is not None:
                    request_id = value.decode("ascii")
                else:
                    _logger.info(
                        "request_id_replaced",
                        header=self.header_name,
                        reason="not trusted" if self.trust_incoming is False else "malformed",
                        length=len(value),
                    )
            elif name == b"traceparent":
                trace_id = _trace_id(value)
        if request_id is None:
            request_id = self.generator()

        id_token = request_id_var.set(request_id)
        trace_token = trace_id_var.set(trace_id)
        encoded = (self._header_key, request_id.encode("ascii"))
        start_type = "http.response.start" if scope_type == "http" else "websocket.accept"

        async def send_with_id(message: Message) -> None:
            if message["type"] == start_type:
                header_key = self._header_key
                headers = [item for item in message.get("headers", ()) if item[0] != header_key]
                headers.append(encoded)
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            trace_id_var.reset(trace_token)
            request_id_var.reset(id_token)
