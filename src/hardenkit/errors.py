"""One error format: RFC 9457 problem details with a stable machine ``code``.

Every error hardenkit produces, and every unhandled exception, leaves the service as
``application/problem+json``::

    {"type": "urn:hardenkit:problem:rate-limited", "title": "Too Many Requests",
     "status": 429, "detail": "...", "instance": "/api/items", "code": "RATE_LIMITED",
     "request_id": "4b1d..."}

``detail`` only ever carries text written for the client. A 5xx body says nothing about
the failure; the request id ties it to the log line that has everything.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from http import HTTPStatus
from types import MappingProxyType, ModuleType
from typing import Any, Final

import structlog
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocketDisconnect, WebSocketState

from hardenkit.context import FACTS_KEY, get_request_id, own_facts

__all__ = [
    "PROBLEM_CONTENT_TYPE",
    "RETRY_SHORTLY_SECONDS",
    "ConfigurationError",
    "ErrorCode",
    "ErrorMiddleware",
    "HardenError",
    "ProblemResponse",
    "Refusal",
    "code_for_status",
    "harden_error_handler",
    "http_exception_handler",
    "problem_body",
    "retry_after_seconds",
    "send_refusal",
    "validation_exception_handler",
]

PROBLEM_CONTENT_TYPE = "application/problem+json"

_logger = structlog.get_logger("hardenkit.errors")

_type_base = "urn:hardenkit:problem:"


class ErrorCode(StrEnum):
    """Stable machine codes carried in the ``code`` member of every problem body."""

    VALIDATION_ERROR = "VALIDATION_ERROR"
    BAD_REQUEST = "BAD_REQUEST"
    AUTHENTICATION_ERROR = "AUTHENTICATION_ERROR"
    AUTHORIZATION_ERROR = "AUTHORIZATION_ERROR"
    TENANT_MISMATCH = "TENANT_MISMATCH"
    NOT_FOUND = "NOT_FOUND"
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
    CONFLICT = "CONFLICT"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    UNSUPPORTED_MEDIA_TYPE = "UNSUPPORTED_MEDIA_TYPE"
    RATE_LIMITED = "RATE_LIMITED"
    REQUEST_TIMEOUT = "REQUEST_TIMEOUT"
    SIGNATURE_INVALID = "SIGNATURE_INVALID"
    SIGNATURE_EXPIRED = "SIGNATURE_EXPIRED"
    UPSTREAM_UNAVAILABLE = "UPSTREAM_UNAVAILABLE"
    UPSTREAM_TIMEOUT = "UPSTREAM_TIMEOUT"
    SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"
    INTERNAL_ERROR = "INTERNAL_ERROR"


_CODE_BY_STATUS: dict[int, ErrorCode] = {
    400: ErrorCode.VALIDATION_ERROR,
    401: ErrorCode.AUTHENTICATION_ERROR,
    403: ErrorCode.AUTHORIZATION_ERROR,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    408: ErrorCode.REQUEST_TIMEOUT,
    409: ErrorCode.CONFLICT,
    413: ErrorCode.PAYLOAD_TOO_LARGE,
    415: ErrorCode.UNSUPPORTED_MEDIA_TYPE,
    422: ErrorCode.VALIDATION_ERROR,
    429: ErrorCode.RATE_LIMITED,
    502: ErrorCode.UPSTREAM_UNAVAILABLE,
    503: ErrorCode.SERVICE_UNAVAILABLE,
    504: ErrorCode.REQUEST_TIMEOUT,
}


def code_for_status(status: int) -> ErrorCode:
    """Return the code used for a plain HTTP error of ``status``."""
    code = _CODE_BY_STATUS.get(status)
    if code is not None:
        return code
    return ErrorCode.INTERNAL_ERROR if status >= 500 else ErrorCode.BAD_REQUEST


class ConfigurationError(Exception):
    """Configuration that hardenkit refuses at startup; the message names the setting."""


class HardenError(Exception):
    """An error with a stable code that becomes a problem+json response.

    Raise it from application code to answer with a coded error::

        raise HardenError(ErrorCode.CONFLICT, status=409, detail="Item already exists.")

    ``detail`` is sent to the client as it is: put nothing secret or internal in it.
    The exception message (for logs) is the detail or the code, never anything else.
    """

    def __init__(
        self,
        code: ErrorCode | str,
        *,
        status: int,
        detail: str | None = None,
        title: str | None = None,
        headers: Mapping[str, str] | None = None,
        extensions: Mapping[str, Any] | None = None,
    ) -> None:
        self.code = str(code)
        self.status = status
        self.detail = detail
        self.title = title
        self.headers = dict(headers or {})
        self.extensions = dict(extensions or {})
        self.on_sent: Callable[[], None] | None = None
        super().__init__(detail or self.code)

    @classmethod
    def from_refusal(cls, refusal: Refusal) -> HardenError:
        """Return the exception that carries ``refusal`` (its ``on_sent`` hook included)."""
        error = cls(
            refusal.code,
            status=refusal.status,
            detail=refusal.detail,
            title=refusal.title,
            headers=dict(refusal.headers),
            extensions=refusal.extensions,
        )
        error.on_sent = refusal.on_sent
        return error

    def refusal(self) -> Refusal:
        """Return the :class:`Refusal` this exception answers with."""
        return Refusal(
            self.status,
            self.code,
            detail=self.detail,
            title=self.title,
            headers=tuple(self.headers.items()),
            extensions=self.extensions,
            on_sent=self.on_sent,
        )


# The wait asked for when nothing measures it (a dependency that cannot answer now).
RETRY_SHORTLY_SECONDS: Final = 5


def retry_after_seconds(wait: float | None) -> int:
    """Whole seconds for ``Retry-After``: rounded up, never 0; unknown waits are short."""
    if wait is None:
        return RETRY_SHORTLY_SECONDS
    return max(1, math.ceil(wait))


@dataclass(frozen=True, slots=True)
class Refusal:
    """One refusal of a request: everything its problem+json response holds.

    Every layer that refuses (auth, signing, rate limits, timeouts, body limits) builds
    one and hands it to :func:`send_refusal` (raw ASGI) or raises it as a
    :class:`HardenError` (:meth:`error`). ``on_sent`` records the refusal (audit event,
    metric): it runs where the refusal is sent, once, never where it is built.

    Attributes:
        status: HTTP status.
        code: Stable machine code.
        detail: Text written for the client; nothing secret or internal.
        headers: Extra response header fields, as ``(name, value)`` pairs.
        extensions: Extra problem members (``retry_after``...).
        title: Overrides the status phrase.
        on_sent: Called once when the refusal is sent.
    """

    status: int
    code: ErrorCode | str
    detail: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    extensions: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    title: str | None = None
    on_sent: Callable[[], None] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def retry_later(
        cls,
        status: int,
        code: ErrorCode | str,
        detail: str,
        *,
        wait: float | None = None,
        headers: tuple[tuple[str, str], ...] = (),
        extensions: Mapping[str, Any] | None = None,
        on_sent: Callable[[], None] | None = None,
    ) -> Refusal:
        """A refusal the client may retry: ``Retry-After`` from :func:`retry_after_seconds`."""
        return cls(
            status,
            code,
            detail,
            headers=(("Retry-After", str(retry_after_seconds(wait))), *headers),
            extensions=MappingProxyType(dict(extensions or {})),
            on_sent=on_sent,
        )

    def error(self) -> HardenError:
        """Return this refusal as an exception to raise."""
        return HardenError.from_refusal(self)

    def sent(self) -> None:
        """Run ``on_sent``; called by whatever sends the refusal."""
        if self.on_sent is not None:
            self.on_sent()


def set_problem_type_base(base: str) -> None:
    """Set the prefix of ``type`` URIs (``HARDENKIT_PROBLEM_TYPE_BASE``)."""
    global _type_base  # noqa: PLW0603 - one process-wide choice, set by install()
    _type_base = base


def problem_body(
    status: int,
    code: ErrorCode | str,
    *,
    detail: str | None = None,
    title: str | None = None,
    instance: str | None = None,
    request_id: str | None = None,
    extensions: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Build the problem details object (RFC 9457) as a dict."""
    code_text = str(code)
    body: dict[str, Any] = {
        "type": _type_base + code_text.lower().replace("_", "-"),
        "title": title or _status_phrase(status),
        "status": status,
    }
    if detail:
        body["detail"] = detail
    if instance:
        body["instance"] = instance
    body["code"] = code_text
    body["request_id"] = request_id if request_id is not None else get_request_id()
    if extensions:
        for key, value in extensions.items():
            body.setdefault(key, value)
    return body


def _status_phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _encode(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def _instance_of(scope: Scope) -> str | None:
    # The path only: a query string can carry secrets.
    path = scope.get("path")
    return path if isinstance(path, str) else None


class ProblemResponse(Response):
    """A Starlette response carrying a problem+json body."""

    media_type = PROBLEM_CONTENT_TYPE

    def __init__(
        self,
        status: int,
        code: ErrorCode | str,
        *,
        detail: str | None = None,
        title: str | None = None,
        instance: str | None = None,
        headers: Mapping[str, str] | None = None,
        extensions: Mapping[str, Any] | None = None,
    ) -> None:
        body = problem_body(
            status, code, detail=detail, title=title, instance=instance, extensions=extensions
        )
        super().__init__(_encode(body), status_code=status, headers=headers)


_HANDSHAKE_RESPONSE: Final = "websocket.http.response"
"""The ASGI extension a server offers to answer a WebSocket handshake with a response."""


async def send_refusal(send: Send, scope: Scope, refusal: Refusal) -> None:
    """Send ``refusal`` as a complete problem+json response over raw ASGI (for middleware).

    Runs the refusal's ``on_sent`` first. A ``websocket`` scope is refused before its
    handshake is accepted: with this response as the handshake's, where the server offers
    the ``websocket.http.response`` extension (uvicorn, Starlette's TestClient), or else
    with a close, which the server answers with ``403``.
    """
    refusal.sent()
    body = _encode(
        problem_body(
            refusal.status,
            refusal.code,
            detail=refusal.detail,
            title=refusal.title,
            instance=_instance_of(scope),
            extensions=refusal.extensions,
        )
    )
    response_headers = [
        (b"content-type", PROBLEM_CONTENT_TYPE.encode()),
        (b"content-length", str(len(body)).encode()),
        *[
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in refusal.headers
        ],
    ]
    status = refusal.status
    if scope.get("type") != "websocket":
        await send({"type": "http.response.start", "status": status, "headers": response_headers})
        await send({"type": "http.response.body", "body": body})
    elif _HANDSHAKE_RESPONSE in (scope.get("extensions") or {}):
        await send(
            {"type": "websocket.http.response.start", "status": status, "headers": response_headers}
        )
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        await send({"type": "websocket.close", "code": 1008, "reason": ""})


def error_response(exc: HardenError, instance: str | None) -> ProblemResponse:
    """Return the response for a :class:`HardenError`; runs its ``on_sent`` hook."""
    refusal = exc.refusal()
    refusal.sent()
    return ProblemResponse(
        refusal.status,
        refusal.code,
        detail=refusal.detail,
        title=refusal.title,
        instance=instance,
        headers=dict(refusal.headers),
        extensions=refusal.extensions,
    )


_REPORTED_ONLY: Final = frozenset({1005, 1006, 1015})


def _wire_code(code: int) -> int:
    """``code``, or ``1000`` for one RFC 6455 reserves for reporting or never defines."""
    return code if 1000 <= code <= 4999 and code not in _REPORTED_ONLY else 1000


class _WebSocketClose(Response):
    """What an exception handler returns for a WebSocket past its handshake: a close.

    Starlette calls the exception handlers with the ``WebSocket`` of a WebSocket route;
    a response sent after ``accept()`` is an ASGI error in the server (uvicorn logged a
    ``RuntimeError``). A refusal closes with ``1008`` (policy violation), a server error
    with ``1011``; a WebSocket already closed gets nothing more.
    """

    def __init__(self, status: int, *, closed: bool) -> None:
        super().__init__()
        self.close_code = 1011 if status >= 500 else 1008
        self.closed = closed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.closed:
            await send({"type": "websocket.close", "code": self.close_code, "reason": ""})


def _websocket_answer(connection: Request, status: int) -> Response | None:
    """The close for a WebSocket past its handshake; ``None`` for a request or handshake."""
    state = getattr(connection, "application_state", None)
    if state is None or state is WebSocketState.CONNECTING:
        return None  # an HTTP request, or a handshake: a response (a denial) answers it
    # Closed by the application, or left by the client (only client_state says so).
    gone = getattr(connection, "client_state", None) is WebSocketState.DISCONNECTED
    return _WebSocketClose(status, closed=gone or state is not WebSocketState.CONNECTED)


async def harden_error_handler(request: Request, exc: Exception) -> Response:
    """Starlette exception handler for :class:`HardenError`."""
    if not isinstance(exc, HardenError):  # pragma: no cover - registered for HardenError only
        raise exc
    if (closing := _websocket_answer(request, exc.status)) is not None:
        return closing
    return error_response(exc, request.url.path)


async def http_exception_handler(request: Request, exc: Exception) -> Response:
    """Map Starlette's (and FastAPI's) ``HTTPException`` to the problem envelope.

    A 4xx keeps the detail the application chose; a 5xx never carries one.
    """
    if not isinstance(exc, HTTPException):  # pragma: no cover - registered for HTTPException
        raise exc
    status = exc.status_code
    if (closing := _websocket_answer(request, status)) is not None:
        return closing
    detail = exc.detail if status < 500 and exc.detail != _status_phrase(status) else None
    headers = dict(exc.headers or {})
    if status in {204, 304}:  # no body allowed
        return Response(status_code=status, headers=headers)
    return ProblemResponse(
        status, code_for_status(status), detail=detail, instance=request.url.path, headers=headers
    )


async def validation_exception_handler(request: Request, exc: Exception) -> Response:
    """Map FastAPI/pydantic request validation errors to a 422 problem.

    Each error keeps its location, message and type, never the rejected input (it may be
    a password field).
    """
    raw_errors = getattr(exc, "errors", None)
    entries: list[Mapping[str, Any]] = raw_errors() if callable(raw_errors) else []
    errors = [
        {
            "loc": [str(part) for part in entry.get("loc", ())],
            "msg": str(entry.get("msg", "")),
            "type": str(entry.get("type", "")),
        }
        for entry in entries
    ]
    return ProblemResponse(
        422,
        ErrorCode.VALIDATION_ERROR,
        detail="The request is not valid.",
        instance=request.url.path,
        extensions={"errors": errors},
    )


_HTTP_CLIENTS = ("httpx", "httpx2")


def http_clients() -> list[ModuleType]:
    """``httpx`` and ``httpx2``, those imported: what can have raised their errors.

    The two share their exception classes' names and meaning (the OpenAI SDK and
    Starlette's ``TestClient`` send through ``httpx2``, most clients through ``httpx``).
    """
    return [client for name in _HTTP_CLIENTS if (client := sys.modules.get(name)) is not None]


def outbound_failure(exc: BaseException) -> Refusal | None:
    """The answer to an outbound call's failure that escaped the handler, if it is one.

    A dependency that could not be reached (``httpx.TransportError``, the same of
    ``httpx2``, retries exhausted) is a 502 ``UPSTREAM_UNAVAILABLE``; one that did not
    answer in time (``httpx.TimeoutException``, an attempt timeout of ``resilient``) a 504
    ``UPSTREAM_TIMEOUT``; the request's deadline running out before an attempt could
    start, a 504 ``REQUEST_TIMEOUT``. None of them is a crash of this service, and no
    body names the dependency. Anything else is ``None`` (a 500).
    """
    kind: object = getattr(exc, "hardenkit_outbound", None)
    for client in http_clients():
        if isinstance(exc, client.TimeoutException):
            kind = "timeout"
        elif isinstance(exc, client.TransportError):
            kind = "unavailable"
    if kind == "timeout":
        return Refusal(504, ErrorCode.UPSTREAM_TIMEOUT)
    if kind == "deadline":
        return Refusal(504, ErrorCode.REQUEST_TIMEOUT)
    if kind == "unavailable":
        return Refusal(502, ErrorCode.UPSTREAM_UNAVAILABLE)
    return None


_HANDSHAKE_REFUSED = Refusal(
    403, ErrorCode.AUTHORIZATION_ERROR, "The WebSocket handshake was refused."
)


class ErrorMiddleware:
    """Turn any unhandled exception into a 500 problem that reveals nothing.

    The log line (``unhandled_exception``) carries the exception and its traceback with
    the request id; the response carries only the request id. Place it directly inside
    :class:`~hardenkit.requestid.RequestIdMiddleware` so the 500 carries the id header.
    If the response had already started, the connection is left for the server to abort:
    a truncated body must not look complete. A WebSocket handshake the app closes before
    accepting it (no route serves the path) is answered with a ``403`` problem where the
    server offers ``websocket.http.response``, instead of the server's bare ``403``.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection."""
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                await self._websocket(scope, receive, send)
            else:
                await self.app(scope, receive, send)
            return
        if FACTS_KEY not in scope:  # the first hardenkit layer of this request
            await own_facts(self, scope, receive, send)
            return
        response_started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except HardenError as exc:
            # Raised by middleware (outside the router's exception handlers): a coded
            # refusal, not a crash.
            if response_started:
                raise
            await send_refusal(send, scope, exc.refusal())
        except Exception as exc:
            outbound = outbound_failure(exc)
            if outbound is not None:
                _logger.warning(
                    "upstream_failure",
                    path=scope.get("path"),
                    method=scope.get("method"),
                    status=outbound.status,
                    exc_info=True,
                )
                if response_started:
                    raise
                await send_refusal(send, scope, outbound)
                return
            _logger.exception(
                "unhandled_exception",
                path=scope.get("path"),
                method=scope.get("method"),
                response_started=response_started,
            )
            if not response_started:
                await send_refusal(send, scope, Refusal(500, ErrorCode.INTERNAL_ERROR))

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A handshake the app closes before accepting is answered with a problem.

        Starlette closes a WebSocket no route serves (and an app may close one it
        refuses) before accepting it; the server then answers the handshake with a bare
        ``403``: no problem body, no request id, none of the security headers. Where the
        server offers ``websocket.http.response``, the same ``403`` is sent as a problem
        through the layers outside this one instead. A handler that raises is logged as
        an HTTP one is, and answered with a ``500`` problem before the handshake (a close
        without the extension), a close with code ``1011`` (internal error) after it.
        """
        denial = _HANDSHAKE_RESPONSE in (scope.get("extensions") or {})
        answered = closed = False

        async def send_wrapper(message: Message) -> None:
            nonlocal answered, closed
            if message["type"] == "websocket.close":
                closed = True
                if not answered and denial:
                    answered = True
                    await send_refusal(send, scope, _HANDSHAKE_REFUSED)
                    return
            answered = True
            await send(message)

        client_left = False

        async def receive_wrapper() -> Message:
            nonlocal client_left
            message = await receive()
            if message["type"] == "websocket.disconnect":
                client_left = True
            return message

        try:
            await self.app(scope, receive_wrapper, send_wrapper)
        except WebSocketDisconnect as left:
            # The client left: the end of a session, not a crash. Raised by the handler
            # to close instead: the close it names is sent.
            if not (closed or client_left):
                close = {"type": "websocket.close", "code": _wire_code(left.code), "reason": ""}
                with contextlib.suppress(Exception):  # the connection may be gone anyway
                    await send_wrapper(close)  # before the handshake: a 403 problem
        except HardenError as exc:  # a coded refusal, as over HTTP
            if answered:
                raise
            await send_refusal(send, scope, exc.refusal())
        except Exception as exc:
            if isinstance(exc, ExceptionGroup) and exc.split(WebSocketDisconnect)[1] is None:
                return  # the client left a handler's task group: no crash either
            # As for HTTP: our log line (redacted, with the request id), never the
            # server's traceback; a 500 problem before the handshake, 1011 after it.
            _logger.exception("unhandled_exception", path=scope.get("path"), websocket=True)
            with contextlib.suppress(Exception):  # the connection may be gone already
                if not answered and denial:
                    await send_refusal(send, scope, Refusal(500, ErrorCode.INTERNAL_ERROR))
                elif not closed:
                    await send({"type": "websocket.close", "code": 1011, "reason": ""})
