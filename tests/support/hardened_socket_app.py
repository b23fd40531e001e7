"""One WebSocket route behind ``install()``, for the handshake-refusal e2e test.

Handshakes are rate limited per client ip and authenticated like HTTP requests; the
settings come from the environment the test gives uvicorn (``--factory``).
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from hardenkit import install, load_settings


async def greet(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text("connected")
    await websocket.close()


def create_app() -> Starlette:
    app = Starlette(routes=[WebSocketRoute("/ws", greet)])
    install(app, load_settings())
    return app
