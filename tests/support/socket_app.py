"""One WebSocket route behind ``RateLimitMiddleware``, for the uvicorn e2e test.

Two handshakes a minute per client ip; ``/healthz`` (exempt, as by default) tells
:class:`~tests.support.uvicorn_server.UvicornServer` the server is up.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from hardenkit.ratelimit import MemoryStore, RateLimitMiddleware, RateLimitRule


async def greet(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text("connected")
    await websocket.close()


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok")


app = RateLimitMiddleware(
    Starlette(routes=[WebSocketRoute("/ws", greet), Route("/healthz", healthz)]),
    rules=[RateLimitRule("ip", "2/minute")],
    store=MemoryStore(),
)
