"""Reading a request body with a hard size limit (413 beyond it), for raw ASGI and Starlette."""

from __future__ import annotations

from starlette.requests import ClientDisconnect, Request
from starlette.types import Receive, Scope

from hardenkit.bodylimit import declared_length
from hardenkit.errors import ErrorCode
from hardenkit.signing._refusal import SignatureError, SignatureKind, refuse

__all__ = ["ClientDisconnect", "read_limited", "read_request_body"]


def _too_large(limit: int, kind: SignatureKind) -> SignatureError:
    return refuse(
        "body_too_large",
        f"The body is larger than {limit} bytes.",
        kind=kind,
        code=ErrorCode.PAYLOAD_TOO_LARGE,
        status=413,
    )


async def read_limited(scope: Scope, receive: Receive, limit: int, kind: SignatureKind) -> bytes:
    """Return the whole body from ``receive``; refuse it as soon as it exceeds ``limit``.

    Raises:
        SignatureError: 413 when the declared or actual length is over ``limit``.
        ClientDisconnect: The client went away before the body was complete.
    """
    declared = declared_length(scope)
    if declared is not None and declared > limit:
        raise _too_large(limit, kind)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_large(limit, kind)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def read_request_body(request: Request, limit: int, kind: SignatureKind) -> bytes:
    """Return ``request``'s body under ``limit``, leaving it readable by ``request.body()``."""
    cached = getattr(request, "_body", None)
    if isinstance(cached, bytes):
        # Already read (FastAPI reads it before dependencies when the endpoint takes a
        # body model): the limit still applies, the stream cannot be read twice.
        if len(cached) > limit:
            raise _too_large(limit, kind)
        return cached
    body = await read_limited(request.scope, request.receive, limit, kind)
    # Starlette's own cache of the body: later request.body() / .json() calls (the
    # endpoint's, when this runs in a dependency) get these exact bytes.
    request._body = body
    return body
