"""TimeoutMiddleware: every request gets a deadline, and a handler that overruns it ends.

The deadline goes into :data:`hardenkit.context.deadline_var` before the handler runs,
so outbound calls made while serving the request shrink their own timeouts to what is
left. When the clock runs out:

- **before the response started**: the handler's task is cancelled, the client gets a
  ``504`` (configurable) problem+json ``REQUEST_TIMEOUT`` at once, even when the handler
  is stuck in a thread that cannot be interrupted;
- **after it started** (a streamed body): the handler is cancelled and the response is
  left incomplete, so the server closes the connection and the client sees a truncated
  transfer rather than a body that looks whole.

Either way a ``request_timeout`` log line carries the request id and route, and
``hardenkit.timeouts`` counts it. Server-sent events (a ``text/event-stream`` response),
WebSockets and the configured streaming routes have no timeout. The handler's task is
always awaited before the middleware returns: nothing keeps running behind a response.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final

import structlog
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hardenkit._paths import PathTable, route_path
from hardenkit.context import deadline_var, request_id_var, set_deadline
from hardenkit.errors import ErrorCode, Refusal, send_refusal
from hardenkit.telemetry import timeouts as timeout_counter

if TYPE_CHECKING:
    from hardenkit.settings import HardenSettings

__all__ = ["TimeoutMiddleware", "timeout_layer"]

_logger = structlog.get_logger("hardenkit.timeouts")

_STATUSES: Final = frozenset({408, 503, 504})
_EVENT_STREAM: Final = b"text/event-stream"
_MAX_TIMEOUT: Final = 86_400.0


class TimeoutMiddleware:
    """Pure ASGI middleware bounding how long a request may take.

    Args:
        app: The ASGI application to wrap.
        timeout: Seconds a request may take (``HARDENKIT_REQUEST_TIMEOUT``).
        routes: Path pattern (exact, or a prefix ending in ``*``) to its own timeout in
            seconds; ``None`` exempts the paths (long polls, downloads).
        streaming_paths: Paths exempt from the timeout, for streams that are not
            ``text/event-stream`` (those are recognised by themselves).
        status_code: ``504`` (default), ``408`` or ``503``.
        cancel_grace: Seconds to wait for a cancelled handler to finish its cleanup
            (``finally`` blocks, a blocking call in a thread) before the middleware
            returns anyway and logs ``request_timeout_handler_still_running``.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        timeout: float = 30.0,
        routes: Mapping[str, float | None] | None = None,
        streaming_paths: Iterable[str] = (),
        status_code: int = 504,
        cancel_grace: float = 5.0,
    ) -> None:
        _check_seconds("timeout", timeout)
        for pattern, seconds in (routes or {}).items():
            if seconds is not None:
                _check_seconds(f"routes[{pattern!r}]", seconds)
        if status_code not in _STATUSES:
            raise ValueError(f"status_code must be one of {sorted(_STATUSES)}")
        if not 0 < cancel_grace <= 60:
            raise ValueError("cancel_grace must be in (0, 60] seconds")
        if isinstance(streaming_paths, str):
            raise TypeError("streaming_paths must be a list of paths, not one string")
        table: dict[str, float | None] = dict(routes or {})
        table.update(dict.fromkeys(streaming_paths))
        self.app = app
        self.timeout = float(timeout)
        self.routes: PathTable[float | None] = PathTable(table)
        self.status_code = status_code
        self.cancel_grace = cancel_grace
        self._stragglers: set[asyncio.Future[None]] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        timeout = self.routes.get(route_path(scope), self.timeout) if self.routes else self.timeout
        if timeout is None:
            await self.app(scope, receive, send)
            return
        token = set_deadline(timeout)
        try:
            await self._serve(scope, receive, send, timeout)
        finally:
            deadline_var.reset(token)

    async def _serve(self, scope: Scope, receive: Receive, send: Send, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            if not waiter.done():
                waiter.set_result(None)

        timer = loop.call_later(seconds, wake)
        started = False
        timed_out = False

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if timed_out:
                # The client has its answer (or the stream was cut): nothing more may go out.
                raise asyncio.CancelledError
            if message["type"] == "http.response.start":
                started = True
                if _is_event_stream(message):
                    timer.cancel()  # server-sent events run as long as the client stays
            await send(message)

        task = asyncio.ensure_future(self.app(scope, receive, guarded_send))
        task.add_done_callback(lambda _: wake())
        try:
            await waiter
        except asyncio.CancelledError:
            # The server is cancelling us (shutdown): take the handler down with us.
            timer.cancel()
            task.cancel()
            await self._finish(task, scope)
            raise
        if task.done():
            timer.cancel()
            task.result()  # the handler's own outcome, its exception included
            return
        timed_out = True
        task.cancel()
        self._record(scope, seconds, started=started)
        try:
            if not started:
                with contextlib.suppress(OSError):  # the client may be gone already
                    refusal = Refusal(
                        self.status_code,
                        ErrorCode.REQUEST_TIMEOUT,
                        f"The request took longer than {seconds:g} seconds.",
                    )
                    await send_refusal(send, scope, refusal)
        finally:
            await self._finish(task, scope)

    async def _finish(self, task: asyncio.Future[None], scope: Scope) -> None:
        """Wait for a cancelled handler to end; never let it outlive us unnoticed."""
        done, _ = await asyncio.wait({task}, timeout=self.cancel_grace)
        if not done:
            _logger.error(
                "request_timeout_handler_still_running",
                route=_route_of(scope),
                grace_seconds=self.cancel_grace,
            )
            # Keep a reference so the task is not collected mid-run; it logs when it ends.
            self._stragglers.add(task)
            task.add_done_callback(self._stragglers.discard)
            return
        with contextlib.suppress(asyncio.CancelledError):
            exc = task.exception()
            if exc is not None:
                _logger.warning(
                    "request_timeout_handler_error",
                    route=_route_of(scope),
                    error=type(exc).__name__,
                )

    def _record(self, scope: Scope, timeout: float, *, started: bool) -> None:
        phase = "streaming" if started else "before_response"
        timeout_counter.add(1, {"kind": "inbound", "phase": phase})
        _logger.warning(
            "request_timeout",
            request_id=request_id_var.get(),
            route=_route_of(scope),
            method=scope.get("method"),
            timeout_seconds=timeout,
            response_started=started,
            outcome="stream cut" if started else f"answered {self.status_code}",
        )


def _is_event_stream(message: Message) -> bool:
    for name, value in message.get("headers", ()):
        if name.lower() == b"content-type":
            return bool(value.lower().startswith(_EVENT_STREAM))
    return False


def _route_of(scope: Scope) -> str | None:
    """Return the route template when routing got that far (ids in paths stay out of logs)."""
    route: Any = scope.get("route")
    template = getattr(route, "path", None)
    if isinstance(template, str):
        return template
    path = scope.get("path")
    return path if isinstance(path, str) else None


def _check_seconds(name: str, seconds: float) -> None:
    if not isinstance(seconds, int | float) or not 0 < seconds <= _MAX_TIMEOUT:
        raise ValueError(f"{name} must be a number of seconds in (0, {_MAX_TIMEOUT:g}]")


def timeout_layer(settings: HardenSettings) -> Middleware:
    """Return the request timeout layer ``install()`` adds, from ``HARDENKIT_REQUEST_TIMEOUT*``."""
    return Middleware(
        TimeoutMiddleware,
        timeout=settings.request_timeout,
        routes=dict(settings.request_timeout_routes),
        streaming_paths=list(settings.streaming_paths),
        status_code=settings.request_timeout_status,
    )
