"""TimeoutMiddleware: the deadline, the 504, the cancelled handler, streams and SSE."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import structlog
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from hardenkit.context import deadline_var, remaining_time, request_id_var
from hardenkit.requestid import RequestIdMiddleware
from hardenkit.resilience.deadline import deadline
from hardenkit.timeouts import TimeoutMiddleware
from tests.headers.asgi import call
from tests.support.inherited import Sent, pipelined

TIMEOUT = 0.25
# The answer must come within the timeout plus this much: a 504 that waits is no timeout.
SLACK = 0.1


class Handlers:
    """Routes whose cleanup the tests can observe."""

    def __init__(self) -> None:
        self.finally_ran = threading.Event()
        self.seen_remaining: float | None = None
        self.sync_release = threading.Event()

    async def slow(self, request: Request) -> Response:
        try:
            await asyncio.sleep(10)
            return JSONResponse({"late": True})
        finally:
            self.finally_ran.set()

    async def fast(self, request: Request) -> Response:
        self.seen_remaining = remaining_time()
        return JSONResponse({"ok": True})

    def blocking(self, request: Request) -> Response:
        # A sync endpoint runs in a thread that cancellation cannot interrupt.
        self.sync_release.wait(5)
        self.finally_ran.set()
        return JSONResponse({"late": True})

    async def crash(self, request: Request) -> Response:
        raise ValueError("handler bug")

    async def sse(self, request: Request) -> Response:
        async def events() -> AsyncIterator[str]:
            for number in range(8):
                yield f"data: {number} {remaining_time()}\n\n"
                await asyncio.sleep(TIMEOUT / 4)

        return StreamingResponse(events(), media_type="text/event-stream")

    async def download(self, request: Request) -> Response:
        async def chunks() -> AsyncIterator[bytes]:
            try:
                for _ in range(20):
                    yield b"row\n"
                    await asyncio.sleep(TIMEOUT / 4)
            finally:
                self.finally_ran.set()

        return StreamingResponse(chunks(), media_type="text/csv")


def make_app(handlers: Handlers, **options: Any) -> Any:
    app = Starlette(
        routes=[
            Route("/slow", handlers.slow),
            Route("/fast", handlers.fast),
            Route("/blocking", handlers.blocking),
            Route("/crash", handlers.crash),
            Route("/sse", handlers.sse),
            Route("/download", handlers.download),
            Route("/reports/{report_id}", handlers.slow),
        ]
    )
    options.setdefault("timeout", TIMEOUT)
    return RequestIdMiddleware(TimeoutMiddleware(app, **options), trust="any")


def other_tasks() -> set[asyncio.Task[Any]]:
    return {task for task in asyncio.all_tasks() if task is not asyncio.current_task()}


async def test_a_handler_past_the_deadline_is_cancelled_and_the_client_gets_a_504_in_time() -> None:
    handlers = Handlers()
    before = other_tasks()
    captured = await call(make_app(handlers), "/slow")
    assert captured.status == 504
    assert captured.seconds_until_start() < TIMEOUT + SLACK
    assert captured.seconds_until_start() >= TIMEOUT
    assert handlers.finally_ran.is_set()  # cancelled, its cleanup ran
    body = json.loads(captured.body)
    assert body["code"] == "REQUEST_TIMEOUT"
    assert body["status"] == 504
    assert body["request_id"] == captured.header("x-request-id")
    assert captured.header("content-type") == "application/problem+json"
    assert other_tasks() == before  # nothing left running


async def test_timeout_status_is_configurable() -> None:
    captured = await call(make_app(Handlers(), status_code=408), "/slow")
    assert captured.status == 408
    assert json.loads(captured.body)["code"] == "REQUEST_TIMEOUT"


async def test_the_request_deadline_is_set_for_the_handler_and_reset_after() -> None:
    handlers = Handlers()
    captured = await call(make_app(handlers), "/fast")
    assert captured.status == 200
    assert handlers.seen_remaining is not None
    assert 0 < handlers.seen_remaining <= TIMEOUT
    assert deadline_var.get() is None


async def test_a_deadline_left_by_another_request_is_not_this_ones() -> None:
    # uvicorn starts a pipelined request inside the previous one's context: the deadline
    # of a request answered with a 504 (passed by then) must not shorten the next one's
    # budget for outbound calls to nothing.
    handlers = Handlers()
    timed_out, served = await pipelined(make_app(handlers), Sent("/slow"), Sent("/fast"))
    assert (timed_out.status, served.status) == (504, 200)
    assert handlers.seen_remaining is not None
    assert TIMEOUT / 2 < handlers.seen_remaining <= TIMEOUT


async def test_the_timeout_never_extends_a_deadline_set_around_it() -> None:
    # An outer layer (an app with its own install() around this one) or the caller's own
    # deadline() gave the request less time: the handler sees that, not a fresh timeout.
    handlers = Handlers()
    token = deadline_var.set(time.monotonic() + TIMEOUT / 5)
    try:
        captured = await call(make_app(handlers), "/fast")
    finally:
        deadline_var.reset(token)
    assert captured.status == 200
    assert handlers.seen_remaining is not None
    assert handlers.seen_remaining <= TIMEOUT / 5


async def test_a_fast_request_is_untouched_and_leaves_no_task() -> None:
    before = other_tasks()
    captured = await call(make_app(Handlers()), "/fast")
    assert captured.status == 200
    assert json.loads(captured.body) == {"ok": True}
    assert other_tasks() == before


async def test_a_handler_stuck_in_a_thread_still_gets_its_504_on_time() -> None:
    handlers = Handlers()
    before = other_tasks()
    try:
        captured = await asyncio.wait_for(call(make_app(handlers), "/blocking"), 5)
        assert captured.status == 504
        assert captured.seconds_until_start() < TIMEOUT + SLACK
        assert len([m for _, m in captured.messages if m["type"] == "http.response.start"]) == 1
        # A thread cannot be interrupted: it is still blocked, but no task waits on it.
        assert not handlers.finally_ran.is_set()
        assert other_tasks() == before
    finally:
        handlers.sync_release.set()
    assert await asyncio.to_thread(handlers.finally_ran.wait, 5)


async def test_a_handlers_own_error_is_not_hidden_by_the_timeout_layer() -> None:
    with pytest.raises(ValueError, match="handler bug"):
        await call(make_app(Handlers()), "/crash")


async def test_server_sent_events_stream_past_the_timeout() -> None:
    captured = await call(make_app(Handlers()), "/sse")
    assert captured.status == 200
    assert captured.complete
    assert captured.body.count(b"data: ") == 8
    assert captured.body_times()[-1] > TIMEOUT * 1.5
    # The clock stopped for its outbound calls too: no deadline to run out mid-stream.
    assert captured.body.count(b" None\n\n") == 8


async def test_background_work_past_the_deadline_is_cut_and_the_log_says_it_came_after() -> None:
    # Starlette runs a response's background tasks after its last byte, in the request's
    # call: they are held to the request's budget (work after the response, a FastAPI
    # teardown or a client trickling an upload the handler reads after answering, must
    # not escape it). A new-user review found one cut with only "stream cut" logged,
    # after a 200 {"queued": true}: the line now says the cut came after the response.
    started = asyncio.Event()
    finished = asyncio.Event()

    async def job() -> None:
        started.set()
        await asyncio.sleep(TIMEOUT * 4)
        finished.set()

    async def queue(request: Request) -> Response:
        return JSONResponse({"queued": True}, background=BackgroundTask(job))

    app = RequestIdMiddleware(
        TimeoutMiddleware(Starlette(routes=[Route("/queue", queue)]), timeout=TIMEOUT),
        trust="any",
    )
    with structlog.testing.capture_logs() as logs:
        captured = await call(app, "/queue")
    assert captured.status == 200
    assert captured.complete
    assert started.is_set()
    assert not finished.is_set()
    [line] = [log for log in logs if log["event"] == "request_timeout"]
    assert line["phase"] == "after_response"
    assert line["outcome"].startswith("work after the response cut")
    assert line["route"] == "/queue"


async def test_a_slow_last_body_send_is_still_held_to_the_deadline() -> None:
    # Only what comes after the last byte is free: a client that reads the response
    # slowly still runs into the timeout.
    async def stalled_send(message: Any) -> None:
        if message["type"] == "http.response.body":
            await asyncio.sleep(10)

    async def small(request: Request) -> Response:
        return JSONResponse({"ok": True})

    layer = TimeoutMiddleware(Starlette(routes=[Route("/small", small)]), timeout=TIMEOUT)
    scope = {
        "type": "http", "method": "GET", "path": "/small", "raw_path": b"/small",
        "root_path": "", "query_string": b"", "headers": [], "http_version": "1.1",
        "scheme": "http", "server": ("testserver", 80), "client": ("127.0.0.1", 1),
        "hardenkit.facts": True,
    }  # fmt: skip

    async def receive() -> Any:
        return {"type": "http.request", "body": b"", "more_body": False}

    started = time.monotonic()
    await asyncio.wait_for(layer(scope, receive, stalled_send), 5)
    assert time.monotonic() - started < TIMEOUT + SLACK * 4


async def test_a_stream_keeps_a_deadline_the_application_set_inside_the_layer() -> None:
    # The clock the layer stops is its own: a budget the application set further in (a
    # FastAPI yield dependency's deadline(), here a middleware) still bounds the stream.
    async def budget(scope: Any, receive: Any, send: Any) -> None:
        with deadline(TIMEOUT * 0.8):
            await inner(scope, receive, send)

    inner = Starlette(routes=[Route("/sse", Handlers().sse)])
    app = RequestIdMiddleware(TimeoutMiddleware(budget, timeout=TIMEOUT), trust="any")
    captured = await call(app, "/sse")
    assert captured.status == 200
    assert b" None\n\n" not in captured.body


async def test_a_stream_that_overruns_is_cut_not_completed_and_logged() -> None:
    handlers = Handlers()
    with structlog.testing.capture_logs() as logs:
        captured = await call(
            make_app(handlers), "/download", headers=[(b"x-request-id", b"req-abcdef12")]
        )
    assert captured.status == 200
    assert not captured.complete  # the server closes the connection: a truncated transfer
    assert captured.body_times()[-1] < TIMEOUT + SLACK
    # The body generator's cleanup runs: at once when the cut lands in its sleep, or a
    # few loop turns later (the loop's async-generator finalizer closes it) when its
    # chunk was ready as time ran out and the send refused it.
    for _ in range(100):
        if handlers.finally_ran.is_set():
            break
        await asyncio.sleep(0.01)
    assert handlers.finally_ran.is_set()
    [line] = [log for log in logs if log["event"] == "request_timeout"]
    assert line["response_started"] is True
    assert line["request_id"] == "req-abcdef12"
    assert line["route"] == "/download"


async def test_the_timeout_log_line_names_the_request_id_and_route_template() -> None:
    with structlog.testing.capture_logs() as logs:
        await call(
            make_app(Handlers()), "/reports/42", headers=[(b"x-request-id", b"req-12345678")]
        )
    [line] = [log for log in logs if log["event"] == "request_timeout"]
    assert line["request_id"] == "req-12345678"
    assert line["route"] == "/reports/{report_id}"
    assert line["response_started"] is False
    assert line["log_level"] == "warning"


async def test_routes_can_have_their_own_timeout_or_none() -> None:
    handlers = Handlers()
    app = make_app(handlers, routes={"/reports/*": 0.05, "/slow": None}, timeout=5)
    started = time.monotonic()
    captured = await call(app, "/reports/1")
    assert captured.status == 504
    assert time.monotonic() - started < 0.05 + SLACK

    exempt = asyncio.create_task(call(app, "/slow"))
    await asyncio.sleep(0.3)
    assert not exempt.done()  # no timeout on this route
    exempt.cancel()
    with pytest.raises(asyncio.CancelledError):
        await exempt
    assert handlers.finally_ran.is_set()


async def test_streaming_paths_are_exempt() -> None:
    app = make_app(Handlers(), streaming_paths=["/download"])
    captured = await call(app, "/download")
    assert captured.complete
    assert captured.body.count(b"row") == 20


async def test_cancelling_the_middleware_cancels_the_handler_too() -> None:
    handlers = Handlers()
    before = other_tasks()
    task = asyncio.create_task(call(make_app(handlers, timeout=5), "/slow"))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert handlers.finally_ran.is_set()
    assert other_tasks() == before


async def test_websockets_pass_through_without_a_deadline() -> None:
    seen: list[float | None] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(deadline_var.get())

    await TimeoutMiddleware(app, timeout=1)({"type": "websocket", "path": "/ws"}, None, None)  # type: ignore[arg-type]
    assert seen == [None]


@pytest.mark.parametrize(
    "options",
    [
        {"timeout": 0},
        {"timeout": -1},
        {"timeout": 1e9},
        {"status_code": 500},
        {"routes": {"/x": 0}},
        {"routes": {"/a*b": 1}},
        {"streaming_paths": "/stream"},
    ],
)
def test_bad_options_fail_at_construction(options: dict[str, Any]) -> None:
    with pytest.raises((ValueError, TypeError)):
        TimeoutMiddleware(make_app(Handlers()), **options)


async def test_the_timeout_is_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    counted: list[tuple[int, dict[str, str]]] = []

    class Counter:
        def add(self, amount: int, attributes: dict[str, str]) -> None:
            counted.append((amount, attributes))

    monkeypatch.setattr("hardenkit.timeouts.timeout_counter", Counter())
    await call(make_app(Handlers()), "/slow")
    assert counted == [(1, {"kind": "inbound", "phase": "before_response"})]
    assert request_id_var.get() is None


async def test_a_handler_that_swallows_cancellation_cannot_delay_or_spoil_the_504() -> None:
    finished = asyncio.Event()

    async def stubborn(request: Request) -> Response:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            await asyncio.sleep(0.3)  # keeps working after being told to stop
        finished.set()
        return JSONResponse({"late": True})

    inner = TimeoutMiddleware(
        Starlette(routes=[Route("/stubborn", stubborn)]), timeout=TIMEOUT, cancel_grace=0.1
    )
    with structlog.testing.capture_logs() as logs:
        captured = await call(inner, "/stubborn")
    assert captured.status == 504
    assert captured.seconds_until_start() < TIMEOUT + SLACK
    starts = [m for _, m in captured.messages if m["type"] == "http.response.start"]
    assert len(starts) == 1  # its late response never reaches the client
    assert "request_timeout_handler_still_running" in [log["event"] for log in logs]
    assert len(inner._stragglers) == 1  # held, so it is not collected mid-run
    await asyncio.wait_for(finished.wait(), 2)
    await asyncio.sleep(0)
    assert inner._stragglers == set()


async def test_the_handler_runs_in_the_requests_own_task() -> None:
    # No second task per request: what the handler sees is the task serving the request.
    seen: list[asyncio.Task[Any] | None] = []

    async def handler(request: Request) -> Response:
        seen.append(asyncio.current_task())
        await asyncio.sleep(0)
        return JSONResponse({"ok": True})

    app = TimeoutMiddleware(Starlette(routes=[Route("/", handler)]), timeout=TIMEOUT)
    captured = await call(app, "/")
    assert captured.status == 200
    assert seen == [asyncio.current_task()]


async def test_a_handler_that_swallows_cancellation_and_ends_within_the_grace_is_not_held() -> None:
    ended = asyncio.Event()

    async def slow_cleanup(request: Request) -> Response:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            await asyncio.sleep(0.05)  # cleanup that awaits, shorter than the grace
        ended.set()
        return JSONResponse({"late": True})

    inner = TimeoutMiddleware(
        Starlette(routes=[Route("/cleanup", slow_cleanup)]), timeout=TIMEOUT, cancel_grace=1
    )
    with structlog.testing.capture_logs() as logs:
        captured = await call(inner, "/cleanup")
    assert captured.status == 504
    assert captured.seconds_until_start() < TIMEOUT + SLACK  # answered before the cleanup
    assert ended.is_set()  # and the cleanup finished before the middleware returned
    assert len([m for _, m in captured.messages if m["type"] == "http.response.start"]) == 1
    assert inner._stragglers == set()
    events = [log["event"] for log in logs]
    assert events.count("request_timeout") == 1
    assert "request_timeout_handler_still_running" not in events


async def test_the_deadline_cancels_only_the_handler_not_the_caller_after_it() -> None:
    handlers = Handlers()
    captured = await call(make_app(handlers), "/slow")
    assert captured.status == 504
    # The caller's task goes on: no cancellation of ours is left pending on it.
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0
    await asyncio.sleep(0.01)


@pytest.mark.parametrize("mounted", [False, True])
def test_the_timeout_log_names_the_route_template_under_install_and_a_mount(
    mounted: bool,
) -> None:
    # Auth hands the router a copy of the scope (it rewrites the tenant header), so the
    # route the router picked never reached this layer's: the line named /reports/42,
    # ids and all, or the parent's Mount (/v1) for an app mounted in another.
    from starlette.routing import Mount

    from hardenkit import HardenSettings, install
    from hardenkit.testing import TokenIssuer

    issuer = TokenIssuer.hs256()

    async def report(request: Request) -> Response:
        await asyncio.sleep(10)
        return JSONResponse({})

    inner = Starlette(routes=[Route("/reports/{report_id}", report)])
    install(inner, HardenSettings(**issuer.settings(), request_timeout=TIMEOUT))
    app = Starlette(routes=[Mount("/v1", app=inner)]) if mounted else inner
    path = "/v1/reports/42" if mounted else "/reports/42"
    token = issuer.mint(tenant="acme")
    with structlog.testing.capture_logs() as logs, TestClient(app) as client:
        response = client.get(path, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 504
    [line] = [log for log in logs if log["event"] == "request_timeout"]
    assert line["route"] == "/reports/{report_id}"


def test_the_timeout_log_names_a_fastapi_routes_template_with_its_router_prefix() -> None:
    # An attacker round: a route of an APIRouter included with prefix="/v1" was logged
    # as /reports/{report_id}, the same for /v1 and /v2.
    from fastapi import APIRouter, FastAPI

    from hardenkit import HardenSettings, install

    v1, v2 = APIRouter(), APIRouter()

    @v1.get("/reports/{report_id}")
    async def first(report_id: int) -> dict[str, int]:
        await asyncio.sleep(10)
        return {}

    @v2.get("/reports/{report_id}")
    async def second(report_id: int) -> dict[str, int]:
        await asyncio.sleep(10)
        return {}

    app = FastAPI()
    app.include_router(v1, prefix="/v1")
    app.include_router(v2, prefix="/v2")
    install(app, HardenSettings(auth_mode="off", request_timeout=TIMEOUT))
    with structlog.testing.capture_logs() as logs, TestClient(app) as client:
        assert client.get("/v1/reports/42").status_code == 504
        assert client.get("/v2/reports/42").status_code == 504
    routes = [log["route"] for log in logs if log["event"] == "request_timeout"]
    assert routes == ["/v1/reports/{report_id}", "/v2/reports/{report_id}"]
