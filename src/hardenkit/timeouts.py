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
WebSockets and the configured streaming routes have no timeout. The handler runs in
the request's own task, under one watchdog per event loop (no second task, no timer
per request); a handler that ignores its cancellation gets ``cancel_grace`` seconds to end,
then goes on in a task of its own, held and logged, while the middleware returns.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final

import structlog
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hardenkit._inline import InlineRun
from hardenkit._paths import PathTable, route_path
from hardenkit._routes import iter_routes, serving_route
from hardenkit._timer import AttemptWatch, watch
from hardenkit.context import (
    FACTS_KEY,
    deadline_var,
    is_last_body,
    own_facts,
    request_id_var,
    set_deadline,
)
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
        self._stragglers: set[asyncio.Task[None]] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if FACTS_KEY not in scope:  # the first hardenkit layer of this request
            await own_facts(self, scope, receive, send)
            return
        timeout = self.routes.get(route_path(scope), self.timeout) if self.routes else self.timeout
        if timeout is None:
            await self.app(scope, receive, send)
            return
        # Never later than a deadline an outer layer of this request set (an app with its
        # own install() mounted in another): the outer one cancels first. None is another
        # request's: a pipelined request starts with no facts (hardenkit.context).
        outer = deadline_var.get()
        token = set_deadline(timeout)
        try:
            await self._serve(scope, receive, send, timeout, (outer, deadline_var.get()))
        finally:
            deadline_var.reset(token)

    async def _serve(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        seconds: float,
        deadlines: tuple[float | None, float | None],
    ) -> None:
        # The handler runs in this task; the per-loop watchdog cancels it at the deadline
        # (no timer, future or second task per request, see hardenkit._inline).
        attempt = watch(seconds)
        response = _GuardedResponse(self, send, scope, seconds, attempt, deadlines=deadlines)
        run = InlineRun(
            self.app(scope, receive, response.send),
            attempt,
            on_overrun=response.time_up,
            grace=self.cancel_grace,
        )
        try:
            await run
        except asyncio.CancelledError:
            if not attempt.timed_out():
                attempt.done()
                raise  # the server is cancelling us (shutdown): the handler went down too
        except Exception as error:
            if not attempt.timed_out():
                attempt.done()
                raise  # the handler's own error, for the error layer
            _logger.warning(
                "request_timeout_handler_error", route=_route_of(scope), error=type(error).__name__
            )
        else:
            if not attempt.expired:
                attempt.done()
                return
            attempt.timed_out()  # it swallowed the deadline's cancellation and returned
        attempt.done()
        await response.time_up()
        if run.detached is not None:
            self._hold(run.detached, scope)

    def _hold(self, straggler: asyncio.Task[None], scope: Scope) -> None:
        """Keep a handler still running past its grace from being collected mid-run."""
        _logger.error(
            "request_timeout_handler_still_running",
            route=_route_of(scope),
            grace_seconds=self.cancel_grace,
        )
        self._stragglers.add(straggler)
        straggler.add_done_callback(self._stragglers.discard)


class _GuardedResponse:
    """The handler's ``send`` and the timeout's one answer to the client.

    Nothing the handler sends goes out once its time is up; an event stream ends the
    watch (server-sent events run as long as the client stays).
    """

    __slots__ = (
        "_attempt",
        "_deadlines",
        "_layer",
        "_scope",
        "_seconds",
        "_send",
        "closed",
        "complete",
        "started",
    )

    def __init__(
        self,
        layer: TimeoutMiddleware,
        send: Send,
        scope: Scope,
        seconds: float,
        attempt: AttemptWatch,
        *,
        deadlines: tuple[float | None, float | None],
    ) -> None:
        self._layer = layer
        self._deadlines = deadlines  # the one around this layer, and this layer's own
        self._send = send
        self._scope = scope
        self._seconds = seconds
        self._attempt = attempt
        self.started = False
        self.complete = False  # the last body message went out: the client has it all
        self.closed = False

    async def send(self, message: Message) -> None:
        if self.closed or self._attempt.expired:
            # The client has its answer (or the stream was cut): nothing more may go out.
            raise asyncio.CancelledError
        if message["type"] == "http.response.start":
            self.started = True
            if _is_event_stream(message):
                # Server-sent events have no timeout: the clock stops, and the stream's
                # own outbound calls are held to no deadline of this layer's either.
                self._release()
        await self._send(message)
        if is_last_body(message):
            # What the application does after this in the same call (Starlette's
            # background tasks, a FastAPI dependency's teardown) is still held to the
            # deadline; when it is cut, the log says so rather than "stream cut".
            self.complete = True

    def _release(self) -> None:
        """Stop the clock, and restore the deadline from before this layer's."""
        self._attempt.done()
        outer, own = self._deadlines
        if deadline_var.get() is own:  # not one the application set further in
            deadline_var.set(outer)

    async def time_up(self) -> None:
        """Record the timeout and answer it (a 504 before the response started), once."""
        if self.closed:
            return
        self.closed = True
        self._record()
        if self.started:
            return  # the stream is cut: the server closes the connection
        with contextlib.suppress(OSError):  # the client may be gone already
            refusal = Refusal(
                self._layer.status_code,
                ErrorCode.REQUEST_TIMEOUT,
                f"The request took longer than {self._seconds:g} seconds.",
            )
            await send_refusal(self._send, self._scope, refusal)

    def _record(self) -> None:
        started = self.started
        if self.complete:
            phase, outcome = "after_response", "work after the response cut (background tasks)"
        elif started:
            phase, outcome = "streaming", "stream cut"
        else:
            phase, outcome = "before_response", f"answered {self._layer.status_code}"
        timeout_counter.add(1, {"kind": "inbound", "phase": phase})
        _logger.warning(
            "request_timeout",
            request_id=request_id_var.get(),
            route=_route_of(self._scope),
            method=self._scope.get("method"),
            timeout_seconds=self._seconds,
            response_started=started,
            phase=phase,
            outcome=outcome,
        )


def _is_event_stream(message: Message) -> bool:
    for name, value in message.get("headers", ()):
        if name.lower() == b"content-type":
            return bool(value.lower().startswith(_EVENT_STREAM))
    return False


def _route_of(scope: Scope) -> str | None:
    """Return the template of the route serving ``scope`` (ids in paths stay out of logs).

    Worked out from the app's routes as its router picks them (only when a line is
    logged): the scope this layer holds may be a copy a layer below made before routing
    (auth, rewriting the tenant header), so the router's ``route`` is not in it, or it may
    hold the ``Mount`` of a parent app there. Without routes to look at, the route the
    router noted, else the path.
    """
    app = scope.get("app")
    routes = getattr(getattr(app, "router", None), "routes", None)
    if routes is not None:
        try:
            found = serving_route(routes, scope)
        except Exception:  # noqa: BLE001 - a route's own matches(): the log line must go out
            found = None
        if found is not None:
            served = found[0]
            # A FastAPI route included with a prefix is listed as its prefixed context,
            # which keeps the route as ``original_route``. A route included under two
            # prefixes cannot be told apart here: its own template, without them.
            listed = [
                info.path
                for info in iter_routes(app)
                if info.route is served or getattr(info.route, "original_route", None) is served
            ]
            if len(listed) == 1:
                return listed[0]
            template = getattr(served, "path", None)
            if isinstance(template, str):
                return template
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
