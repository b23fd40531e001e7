"""How long the server took to answer, told by the server: ``Server-Timing: app;dur=<ms>``.

A load client's wall time per request measures the client as much as the server: with
50 requests in flight on one event loop, each request also waits for the client to
process the other 49 (and httpx's pool bookkeeping, and coverage tracing the test
process). A bound on the server's answer time must be read from the server.

:class:`ServerTimingMiddleware` wraps an app from the outside: from the moment the server
hands it the request to the moment the response starts (status and headers decided), the
whole hardenkit stack included. It is test instrumentation, not part of the reference app
(a production service should not tell every caller how long it took).
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from examples.reference_app.app import create_app

SERVER_TIMING_METRIC = "app"


class ServerTimingMiddleware:
    """Add ``Server-Timing: app;dur=<milliseconds>`` to every HTTP response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def send_with_timing(message: Message) -> None:
            if message["type"] == "http.response.start":
                milliseconds = (time.perf_counter() - started) * 1000
                timing = f"{SERVER_TIMING_METRIC};dur={milliseconds:.3f}".encode()
                message = {
                    **message,
                    "headers": [*message.get("headers", []), (b"server-timing", timing)],
                }
            await send(message)

        await self.app(scope, receive, send_with_timing)


def timed_reference_app() -> ASGIApp:
    """The reference app exactly as ``create_app()`` builds it, answer times reported."""
    return ServerTimingMiddleware(create_app())


def server_seconds(server_timing: str | None) -> float | None:
    """The ``app`` duration of a ``Server-Timing`` header value, in seconds (``None``: absent)."""
    for metric in (server_timing or "").split(","):
        name, *params = (part.strip() for part in metric.split(";"))
        if name != SERVER_TIMING_METRIC:
            continue
        for param in params:
            key, _, value = param.partition("=")
            if key.strip() == "dur":
                return float(value) / 1000
    return None
