"""Routes to watch the request timeout work.

- ``GET /api/slow?seconds=N`` sleeps ``N`` seconds (0 to 120) and answers; past
  ``HARDENKIT_REQUEST_TIMEOUT`` the client gets a 504 ``REQUEST_TIMEOUT`` problem instead.
  Anything that is not a number in range is a 400 ``VALIDATION_ERROR``.
- ``GET /api/stream`` sends server-sent events, one a second, for three seconds longer
  than the request timeout: event streams are exempt, so it runs to the end.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from hardenkit import ErrorCode, HardenError

MAX_SLEEP_SECONDS = 120.0
STREAM_INTERVAL_SECONDS = 1.0
STREAM_OVERRUN_SECONDS = 3.0


def _seconds(request: Request) -> float:
    raw = request.query_params.get("seconds", "1")
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not 0 <= seconds <= MAX_SLEEP_SECONDS:  # NaN and infinities fail this too
        raise HardenError(
            ErrorCode.VALIDATION_ERROR,
            status=400,
            detail=f"seconds must be a number from 0 to {MAX_SLEEP_SECONDS:g}.",
        )
    return seconds


async def slow(request: Request) -> Response:
    seconds = _seconds(request)
    await asyncio.sleep(seconds)
    return JSONResponse({"slept_seconds": seconds})


async def stream(request: Request) -> Response:
    timeout = request.app.state.hardenkit.settings.request_timeout
    count = math.ceil((timeout + STREAM_OVERRUN_SECONDS) / STREAM_INTERVAL_SECONDS)

    async def events() -> AsyncIterator[str]:
        for number in range(1, count + 1):
            yield f"id: {number}\nevent: tick\ndata: {json.dumps({'tick': number})}\n\n"
            if number < count:
                await asyncio.sleep(STREAM_INTERVAL_SECONDS)

    return StreamingResponse(
        events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
    )


routes = [Route("/api/slow", slow), Route("/api/stream", stream)]
