"""``GET /api/upstream``: an outbound call to a deliberately flaky upstream, made resilient.

The upstream is a second ASGI app living in this process (:data:`fake_upstream`), reached
over a real ``httpx.AsyncClient`` whose transport is hardenkit's ``ResilientTransport``:
deadline → retry → circuit breaker → timeout → call. What the route answers:

- 200 with the upstream's JSON when an attempt (maybe a retry) succeeded;
- 502 ``UPSTREAM_UNAVAILABLE`` when every attempt failed;
- 503 ``UPSTREAM_UNAVAILABLE`` with ``Retry-After`` while the breaker is open (the
  upstream is not called at all). ``/readyz`` then reports ``degraded``.

Make the upstream fail fully and recover, for demos and end-to-end tests:

- ``PUT /api/upstream/mode`` with ``{"mode": "down"}``, ``"up"`` or ``"flaky"`` (refused
  with 404 in production), or
- in-process: ``upstream.fake_upstream.mode = "down"``.

``flaky`` (the default) fails one request in three with a 503, which the retry absorbs.
The breaker is tuned small so a demo opens it in two requests and closes it five seconds
after the upstream recovers.
"""

from __future__ import annotations

from typing import Literal, cast

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hardenkit import CircuitBreaker, ErrorCode, HardenError, read_json, resilient
from hardenkit.resilience.httpx import ResilientTransport

Mode = Literal["up", "down", "flaky"]

UPSTREAM_HOST = "upstream.internal"
BREAKER_WAIT_SECONDS = 5.0
MODE_BODY_BYTES = 1024  # {"mode": "flaky"} is 17 bytes


class FakeUpstream:
    """The flaky dependency: a tiny ASGI app whose health is switched by :attr:`mode`."""

    def __init__(self) -> None:
        self.mode: Mode = "flaky"
        self.requests = 0
        self.app = Starlette(routes=[Route("/quote", self.quote)])

    async def quote(self, request: Request) -> Response:
        self.requests += 1
        failing = self.mode == "down" or (self.mode == "flaky" and self.requests % 3 == 0)
        if failing:
            return JSONResponse({"error": "overloaded"}, status_code=503)
        return JSONResponse(
            {"quote": "It works.", "request_id": request.headers.get("x-request-id")}
        )


fake_upstream = FakeUpstream()

breaker = CircuitBreaker(
    "upstream",
    window_size=6,
    minimum_calls=3,
    failure_rate_threshold=50.0,
    wait_in_open=BREAKER_WAIT_SECONDS,
    permitted_calls_in_half_open=1,
)
policy = resilient("upstream", breaker=breaker, timeout=2.0, attempts=2)
client = httpx.AsyncClient(
    transport=ResilientTransport(
        httpx.ASGITransport(app=fake_upstream.app), policies={UPSTREAM_HOST: policy}
    ),
    base_url=f"http://{UPSTREAM_HOST}",
)


async def call_upstream(request: Request) -> Response:
    # An open breaker raises CircuitOpenError: a 503 UPSTREAM_UNAVAILABLE with Retry-After.
    answer = await client.get("/quote")
    if answer.status_code != 200:
        raise HardenError(
            ErrorCode.UPSTREAM_UNAVAILABLE,
            status=502,
            detail="A service this request depends on failed; try again later.",
        )
    return JSONResponse({"upstream": answer.json(), "breaker": breaker.state.value})


async def set_mode(request: Request) -> Response:
    if request.app.state.hardenkit.settings.is_production:
        raise HardenError(ErrorCode.NOT_FOUND, status=404)
    body = await read_json(request, MODE_BODY_BYTES)
    mode = body.get("mode") if isinstance(body, dict) else None
    if mode not in ("up", "down", "flaky"):
        raise HardenError(
            ErrorCode.VALIDATION_ERROR, status=400, detail='mode must be "up", "down" or "flaky".'
        )
    fake_upstream.mode = cast("Mode", mode)
    return JSONResponse({"mode": fake_upstream.mode, "breaker": breaker.state.value})


routes = [
    Route("/api/upstream", call_upstream, methods=["GET"]),
    Route("/api/upstream/mode", set_mode, methods=["PUT"]),
]
