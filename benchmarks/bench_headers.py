"""Security headers against ``secure``'s SecureASGIMiddleware; the timeout layer's cost.

Both header middlewares wrap the same bare Starlette app and answer over https (so HSTS
is sent). hardenkit does more per response (a fresh CSP nonce, HTML vs API policy,
leaking headers removed, the app's own headers respected) and must still cost less.
The timeout figure is reported against the least a timeout can cost in asyncio (an
``asyncio.timeout()`` block, which cannot answer on time for a handler stuck in a
thread); it has no target.
"""

from __future__ import annotations

import asyncio

from secure import Secure
from secure.middleware import SecureASGIMiddleware
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from benchmarks._harness import AsgiCall, Row, compare_async
from hardenkit import SecurityHeadersMiddleware, TimeoutMiddleware


async def api(request: Request) -> Response:
    return JSONResponse({"ok": True})


async def page(request: Request) -> Response:
    return HTMLResponse("<!DOCTYPE html><title>x</title><p>hello</p>")


def _app() -> Starlette:
    return Starlette(routes=[Route("/api", api), Route("/page", page)])


class _AsyncioTimeout:
    """The cheapest possible timeout layer, for scale."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async with asyncio.timeout(30):
            await self.app(scope, receive, send)


def run(quick: bool) -> list[Row]:
    number, repeat = (2_000, 5) if quick else (10_000, 9)
    rows: list[Row] = []
    for label, path in (("JSON response", "/api"), ("HTML response", "/page")):
        subjects = {
            "bare": AsgiCall(_app(), path=path, scheme="https"),
            "hardenkit": AsgiCall(SecurityHeadersMiddleware(_app()), path=path, scheme="https"),
            "secure": AsgiCall(
                SecureASGIMiddleware(_app(), secure=Secure.with_default_headers()),
                path=path,
                scheme="https",
            ),
        }
        times = compare_async(subjects, number=number, repeat=repeat)
        bare = times["bare"]
        rows.append(
            Row(
                piece="security headers",
                figure=f"overhead per request, {label}",
                ours=(times["hardenkit"] - bare) * 1e6,
                peer_name="secure (SecureASGIMiddleware)",
                peer=(times["secure"] - bare) * 1e6,
                max_ratio=1.0,
            )
        )
    subjects = {
        "bare": AsgiCall(_app(), path="/api"),
        "hardenkit": AsgiCall(TimeoutMiddleware(_app(), timeout=30), path="/api"),
        "asyncio.timeout": AsgiCall(_AsyncioTimeout(_app()), path="/api"),
    }
    times = compare_async(subjects, number=number, repeat=repeat)
    rows.append(
        Row(
            piece="request timeout",
            figure="overhead per request (handler in its own task)",
            ours=(times["hardenkit"] - times["bare"]) * 1e6,
            peer_name="asyncio.timeout() block",
            peer=(times["asyncio.timeout"] - times["bare"]) * 1e6,
        )
    )
    return rows
