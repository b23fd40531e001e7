"""The 504 holds with a user's BaseHTTPMiddleware on both sides of the stack.

Starlette documents ``BaseHTTPMiddleware``; users add one before ``install()`` (inside the
stack: it runs the app below in an anyio task group) and after it (outside: the stack's
answer goes through an anyio memory stream). An attacker round found the handler's
cancellation, parked in the inner task group's cancelled scope, cancelling the 504 as it
was sent outward: a bare 500 from Starlette, an ExceptionGroup in the log, and the
connection dropped with the pipelined request behind it unanswered.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from starlette.applications import Starlette
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp

from hardenkit import public
from hardenkit.requestid import RequestIdMiddleware
from hardenkit.timeouts import TimeoutMiddleware
from tests.support.inherited import Sent, bearer, hardened, pipelined, public_facts

HANDLER_SECONDS = 0.6


class Passthrough(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        return await call_next(request)


@pytest.mark.parametrize("where", ["inside", "outside", "both"])
async def test_a_timed_out_handler_gets_its_504_and_the_connection_serves_on(where: str) -> None:
    finished: list[bool] = []

    async def slow(request: Request) -> Response:
        await asyncio.sleep(HANDLER_SECONDS)
        finished.append(True)
        return Response("late")

    app = Starlette(routes=[Route("/slow", slow), Route("/news", public()(public_facts))])
    if where in ("inside", "both"):
        app.add_middleware(Passthrough)
    hardened(app, request_timeout=0.2)
    if where in ("outside", "both"):
        app.add_middleware(Passthrough)

    timed_out, next_one = await pipelined(app, Sent("/slow", bearer("acme")), Sent("/news"))
    assert timed_out.status == 504
    assert json.loads(timed_out.body)["code"] == "REQUEST_TIMEOUT"
    assert next_one.status == 200
    await asyncio.sleep(HANDLER_SECONDS)
    assert finished == []  # the handler was cancelled, not left to run on


class RefusesServerErrors(BaseHTTPMiddleware):
    """Raises after call_next when the answer is a 5xx (a strict audit sink, say)."""

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        response = await call_next(request)
        if response.status_code >= 500:
            raise RuntimeError("audit sink refused the failed request")
        return response


GRACE = 0.5


def stack(app: ASGIApp) -> ASGIApp:
    """The request id and timeout layers, with a short grace, as install() orders them."""
    return RequestIdMiddleware(TimeoutMiddleware(app, timeout=0.2, cancel_grace=GRACE))


async def test_an_answer_nobody_reads_holds_the_request_no_longer_than_the_grace() -> None:
    # The 504 goes out shielded from the parked handler's scope; a middleware outside
    # that stopped reading it must not leave the request, and the handler, waiting for ever.
    cleaned_up: list[bool] = []

    async def slow(request: Request) -> Response:
        try:
            await asyncio.sleep(10)
        finally:
            await asyncio.sleep(0.05)  # cleanup that awaits: the handler overruns
            cleaned_up.append(True)
        return Response("late")

    app = RefusesServerErrors(stack(Starlette(routes=[Route("/slow", slow)])))
    started = asyncio.get_running_loop().time()
    with pytest.raises(RuntimeError, match="audit sink"):
        await pipelined(app, Sent("/slow"), timeout=5)
    assert asyncio.get_running_loop().time() - started < 0.2 + GRACE + 0.5
    assert cleaned_up == [True]


async def test_a_middleware_outside_that_reads_late_still_gets_the_504() -> None:
    class AuditsFailures(BaseHTTPMiddleware):
        """Writes an audit record of a 5xx before passing the answer on (a slow store)."""

        async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
            response = await call_next(request)
            if response.status_code >= 500:
                await asyncio.sleep(GRACE / 2)
            return response

    async def slow(request: Request) -> Response:
        try:
            await asyncio.sleep(10)
        finally:
            await asyncio.sleep(0.05)
        return Response("late")

    app = AuditsFailures(stack(Starlette(routes=[Route("/slow", slow)])))
    [answer] = await pipelined(app, Sent("/slow"), timeout=5)
    assert answer.status == 504
    assert json.loads(answer.body)["code"] == "REQUEST_TIMEOUT"
