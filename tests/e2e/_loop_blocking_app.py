"""The reference app with one more route, whose handler blocks the event loop.

``GET /api/block?seconds=N`` calls ``time.sleep`` inside an ``async def``, as a
synchronous driver or SDK called from an async handler does: every other request of the
worker waits, and so does every Redis reply already in its sockets. Just before, it
starts the readiness check of the shared Redis guard (what a probe arriving at that
moment runs), so one Redis call is surely in flight through the stall; the answer says
what the guard made of it. The protections must not mistake the stall for a slow or
dead Redis.
"""

from __future__ import annotations

import asyncio
import time

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from examples.reference_app.app import create_app as create_reference_app
from hardenkit import Hardened

BLOCK_PATH = "/api/block"


async def block(request: Request) -> Response:
    seconds = float(request.query_params["seconds"])
    kit: Hardened = request.app.state.hardenkit
    guard = kit.redis_guard
    assert guard is not None  # the test runs this app on Redis
    given_up = guard.single_fallbacks + guard.fallback_activations
    forgiven = guard.loop_lag_forgiven
    check = asyncio.create_task(guard.health_check())
    await asyncio.sleep(0)  # its PING is sent
    time.sleep(seconds)  # the user mistake this app stands for
    result = await check
    return JSONResponse(
        {
            "redis": str(result.status),
            "given_up": guard.single_fallbacks + guard.fallback_activations - given_up,
            "loop_lag_forgiven": guard.loop_lag_forgiven - forgiven,
        }
    )


def create_app() -> Starlette:
    app = create_reference_app()
    app.router.routes.append(Route(BLOCK_PATH, block))
    return app
