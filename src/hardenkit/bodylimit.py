"""Request bodies bounded before anything reads them: the middleware and the readers.

:class:`BodyLimitMiddleware` refuses a declared ``Content-Length`` over the route's limit
before the body is read (and before auth, rate limits or the application run), and counts
a body without one (chunked) as it streams, refusing it when it crosses: the application
never holds more than the limit. Refusals are ``413`` ``PAYLOAD_TOO_LARGE`` problems that
close the connection, so the server stops receiving the rest.

:func:`read_body` and :func:`read_json` are the bounded readers for an endpoint with a
tighter budget of its own (a login form needs a few KiB, not the app's megabyte); a body
that is not JSON, or nests deeper than a parser can follow, is a ``400``, never a ``500``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hardenkit._json_text import loads_text
from hardenkit._paths import PathTable, route_path
from hardenkit.context import FACTS_KEY, own_facts
from hardenkit.errors import ErrorCode, HardenError, send_refusal

if TYPE_CHECKING:
    from hardenkit.settings import HardenSettings

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "BodyLimitMiddleware",
    "BodyTooLargeError",
    "body_limit_layer",
    "declared_length",
    "parse_json",
    "read_body",
    "read_json",
]

DEFAULT_MAX_BODY_BYTES: Final = 1024 * 1024
"""The limit :class:`BodyLimitMiddleware` applies when given none (1 MiB)."""

_CONTENT_LENGTH: Final = b"content-length"
_TRANSFER_ENCODING: Final = b"transfer-encoding"
_FRAMED_VERSIONS: Final = frozenset({"1.0", "1.1"})


class BodyTooLargeError(HardenError):
    """A request body over its limit; a ``413`` ``PAYLOAD_TOO_LARGE`` problem."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            ErrorCode.PAYLOAD_TOO_LARGE,
            status=413,
            detail=f"The request body is larger than {limit} bytes.",
            # The rest of the body is not read: closing the connection stops the server
            # from receiving (and the client from sending) what nobody will look at.
            headers={"Connection": "close"},
        )


class BodyLimitMiddleware:
    """Pure ASGI middleware refusing request bodies over a limit with ``413``.

    ``http`` scopes only: WebSocket messages and lifespan pass through untouched. A
    ``Content-Length`` over the limit is refused without reading a byte; one within it
    passes untouched (the server holds the body to its declared length). A body without
    one (chunked, or HTTP/2) is counted as it streams, and the read that crosses the
    limit raises (a :class:`~hardenkit.errors.HardenError`, so handlers see a coded
    refusal). Whatever the application then does, the client gets the ``413``: a
    response the application starts after the crossing is replaced by it.

    Args:
        app: The ASGI application to protect.
        max_body_bytes: Largest body accepted on routes without their own limit.
        paths: Route path pattern to limit (exact, or a prefix ending in ``*``), for
            routes that need more (uploads) or less; matched on the route path, as
            every hardenkit path setting is.

    Raises:
        ValueError: A limit below 1 byte, or a bad path pattern.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        paths: Mapping[str, int] | None = None,
    ) -> None:
        for name, limit in [("max_body_bytes", max_body_bytes), *(paths or {}).items()]:
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
                raise ValueError(f"body limit {name!r} must be a whole number of bytes >= 1")
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.routes: PathTable[int] = PathTable(paths)

    def limit_for(self, scope: Scope) -> int:
        """Return the body limit of the request described by ``scope``."""
        if not self.routes:
            return self.max_body_bytes
        return self.routes.get(route_path(scope), self.max_body_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if FACTS_KEY not in scope:  # the first hardenkit layer of this request
            await own_facts(self, scope, receive, send)
            return
        limit = self.limit_for(scope)
        declared = declared_length(scope)
        if declared is not None and declared > limit:
            await _refuse(scope, send, limit)
            return
        if not _has_header(scope, _TRANSFER_ENCODING) and (
            declared is not None or scope.get("http_version") in _FRAMED_VERSIONS
        ):
            # Nothing to count: the server holds the body to its Content-Length (HTTP/1.1
            # and HTTP/2 servers refuse a longer one), and an HTTP/1.x request with
            # neither header has no body. Transfer-Encoding wins over Content-Length
            # (RFC 9112 6.3), so a request carrying both is counted.
            await self.app(scope, receive, send)
            return
        received = 0
        crossed = False
        started = False

        async def limited_receive() -> Message:
            nonlocal received, crossed
            if crossed:
                raise BodyTooLargeError(limit)
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    crossed = True
                    raise BodyTooLargeError(limit)
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if crossed:
                # Whatever the application answers to a body it never got in full, the
                # client is told why: the refusal replaces it.
                if not started:
                    started = True
                    await _refuse(scope, send, limit)
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except BodyTooLargeError:
            if not crossed:
                raise
        if crossed and not started:
            await _refuse(scope, send, limit)


def declared_length(scope: Scope) -> int | None:
    """Return the request's ``Content-Length``, or ``None`` when absent or not a number.

    Several ``Content-Length`` headers count as the largest: a body is never believed
    smaller than any of them says.
    """
    declared: int | None = None
    for name, value in scope.get("headers", ()):
        if name == _CONTENT_LENGTH and value.isdigit():
            length = int(value)
            declared = length if declared is None else max(declared, length)
    return declared


def _has_header(scope: Scope, name: bytes) -> bool:
    return any(header == name for header, _ in scope.get("headers", ()))


async def _refuse(scope: Scope, send: Send, limit: int) -> None:
    await send_refusal(send, scope, BodyTooLargeError(limit).refusal())


async def read_body(request: Request, max_bytes: int) -> bytes:
    """Return ``request``'s body, refusing it with ``413`` as soon as it passes ``max_bytes``.

    A ``Content-Length`` over the limit is refused before reading. The bytes stay
    readable by ``request.body()`` / ``request.json()`` afterwards.

    Raises:
        HardenError: ``413`` ``PAYLOAD_TOO_LARGE``.
    """
    if max_bytes < 1:
        raise ValueError("max_bytes must be at least 1")
    cached = getattr(request, "_body", None)
    if isinstance(cached, bytes):  # already read, by a dependency or an outer reader
        if len(cached) > max_bytes:
            raise BodyTooLargeError(max_bytes)
        return cached
    declared = declared_length(request.scope)
    if declared is not None and declared > max_bytes:
        raise BodyTooLargeError(max_bytes)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise BodyTooLargeError(max_bytes)
        chunks.append(chunk)
    body = b"".join(chunks)
    request._body = body  # Starlette's own cache: later request.body() gets these bytes
    return body


def parse_json(body: bytes | str) -> Any:
    """Return the JSON value in ``body``; ``400`` ``BAD_REQUEST`` for anything else.

    Invalid JSON, bytes in no UTF encoding, a string holding a lone surrogate (no
    character: ``"\ud800"``), ``NaN``, ``Infinity`` and numbers out of a float's range
    (``1e999``; no JSON response can carry them), numbers longer than Python converts and
    nesting deeper than the parser's recursion limit are all the client's mistake.

    Raises:
        HardenError: ``400`` ``BAD_REQUEST``.
    """
    try:
        return loads_text(body)
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError included
        raise HardenError(
            ErrorCode.BAD_REQUEST, status=400, detail="The body is not valid JSON."
        ) from None


async def read_json(request: Request, max_bytes: int) -> Any:
    """Return the JSON value of ``request``'s body, read with :func:`read_body`.

    Raises:
        HardenError: ``413`` over ``max_bytes``; ``400`` when the body is not JSON.
    """
    return parse_json(await read_body(request, max_bytes))


def body_limit_layer(settings: HardenSettings) -> Middleware:
    """Return the body limit layer ``install()`` adds, from ``HARDENKIT_MAX_BODY_BYTES*``."""
    return Middleware(
        BodyLimitMiddleware,
        max_body_bytes=settings.max_body_bytes,
        paths=dict(settings.max_body_bytes_paths),
    )
