from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from types import ModuleType
from typing import Any

import httpx
import httpx2
import pytest
import structlog.testing
from fastapi import FastAPI
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient, WebSocketDenialResponse
from starlette.websockets import WebSocket, WebSocketDisconnect

from hardenkit import ErrorCode, HardenError, HardenSettings, install
from hardenkit.errors import ErrorMiddleware, harden_error_handler
from hardenkit.resilience import ResilienceRegistry, resilient

SECRET_MESSAGE = "connection failed for postgres://admin:s3cr3t-pa55@db.internal:5432"


async def crash(request: Request) -> Response:
    raise KeyError(SECRET_MESSAGE)


async def coded(request: Request) -> Response:
    raise HardenError(ErrorCode.CONFLICT, status=409, detail="Item already exists.")


async def http_error(request: Request) -> Response:
    raise HTTPException(status_code=403, detail="You may not do this.")


async def http_5xx(request: Request) -> Response:
    raise HTTPException(status_code=503, detail="redis at 10.0.0.7 is down")


def make_app() -> Starlette:
    app = Starlette(
        routes=[
            Route("/crash", crash),
            Route("/coded", coded),
            Route("/forbidden", http_error),
            Route("/unavailable", http_5xx),
        ]
    )
    # Auth off: these tests are about the error format, not about who may call.
    install(app, HardenSettings(auth_mode="off"))
    return app


def test_unhandled_exception_gives_500_problem_revealing_nothing() -> None:
    response = TestClient(make_app()).get("/crash")
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == "INTERNAL_ERROR"
    assert body["status"] == 500
    assert body["title"] == "Internal Server Error"
    assert body["request_id"] == response.headers["x-request-id"]
    assert "detail" not in body
    for leak in ("s3cr3t", "postgres", "KeyError", "Traceback", "connection failed"):
        assert leak not in response.text


def test_unhandled_exception_is_logged_with_the_same_request_id(capsys: object) -> None:
    import structlog

    with structlog.testing.capture_logs() as logs:
        response = TestClient(make_app()).get("/crash", headers={"X-Request-ID": "req-abcdef12"})
    assert response.status_code == 500
    [entry] = [log for log in logs if log["event"] == "unhandled_exception"]
    assert entry["log_level"] == "error"
    assert entry["exc_info"] is True
    assert entry["path"] == "/crash"


def test_problem_body_has_every_rfc9457_member() -> None:
    body = TestClient(make_app()).get("/coded").json()
    assert body == {
        "type": "urn:hardenkit:problem:conflict",
        "title": "Conflict",
        "status": 409,
        "detail": "Item already exists.",
        "instance": "/coded",
        "code": "CONFLICT",
        "request_id": body["request_id"],
    }


def test_not_found_is_a_problem() -> None:
    response = TestClient(make_app()).get("/missing?token=abc")
    assert response.status_code == 404
    body = response.json()
    assert body["code"] == "NOT_FOUND"
    assert body["instance"] == "/missing"  # never the query string


def test_method_not_allowed_keeps_allow_header() -> None:
    response = TestClient(make_app()).post("/coded")
    assert response.status_code == 405
    assert response.json()["code"] == "METHOD_NOT_ALLOWED"
    assert set(response.headers["allow"].split(", ")) == {"GET", "HEAD"}


def test_http_exception_4xx_keeps_application_detail() -> None:
    body = TestClient(make_app()).get("/forbidden").json()
    assert body["code"] == "AUTHORIZATION_ERROR"
    assert body["detail"] == "You may not do this."


def test_http_exception_5xx_drops_detail() -> None:
    response = TestClient(make_app()).get("/unavailable")
    assert response.status_code == 503
    assert "10.0.0.7" not in response.text
    assert response.json()["code"] == "SERVICE_UNAVAILABLE"


async def test_crash_after_response_started_is_not_disguised_as_complete() -> None:
    from hardenkit import ErrorMiddleware

    async def streams_then_crashes(scope: object, receive: object, send: object) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})  # type: ignore[operator]
        await send({"type": "http.response.body", "body": b"first", "more_body": True})  # type: ignore[operator]
        raise RuntimeError(SECRET_MESSAGE)

    messages: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, object]) -> None:
        messages.append(message)

    scope = {"type": "http", "method": "GET", "path": "/", "headers": []}
    await ErrorMiddleware(streams_then_crashes)(scope, receive, send)  # type: ignore[arg-type]
    # No second start, no final body chunk: the server sees an unfinished response and
    # aborts the connection, so the client cannot take a truncated body for a whole one.
    assert [m["type"] for m in messages] == ["http.response.start", "http.response.body"]
    assert messages[-1]["more_body"] is True


class Item(BaseModel):
    name: str
    quantity: int


def make_fastapi_app() -> FastAPI:
    app = FastAPI()

    @app.post("/items")
    async def create(item: Item) -> dict[str, str]:
        return {"name": item.name}

    @app.get("/boom")
    async def boom() -> None:
        raise ValueError(SECRET_MESSAGE)

    # Auth off: these tests are about the error format, not about who may call.
    install(app, HardenSettings(auth_mode="off"))
    return app


def test_fastapi_validation_error_uses_the_envelope_without_input() -> None:
    response = TestClient(make_fastapi_app()).post(
        "/items", json={"name": "x", "quantity": "hunter2-password"}
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == "VALIDATION_ERROR"
    assert body["errors"][0]["loc"] == ["body", "quantity"]
    assert "hunter2" not in response.text


def test_fastapi_unhandled_exception_reveals_nothing() -> None:
    response = TestClient(make_fastapi_app()).get("/boom")
    assert response.status_code == 500
    assert "s3cr3t" not in response.text
    assert response.json()["request_id"] == response.headers["x-request-id"]


def test_fastapi_http_exception_uses_the_envelope() -> None:
    response = TestClient(make_fastapi_app()).get("/nope")
    assert response.status_code == 404
    assert response.json()["code"] == "NOT_FOUND"


def test_harden_error_raised_in_middleware_becomes_its_problem() -> None:
    from hardenkit import ErrorMiddleware, RequestIdMiddleware

    async def refusing(scope: object, receive: object, send: object) -> None:
        raise HardenError(
            ErrorCode.RATE_LIMITED, status=429, detail="Slow down.", headers={"Retry-After": "3"}
        )

    client = TestClient(RequestIdMiddleware(ErrorMiddleware(refusing)))  # type: ignore[arg-type]
    response = client.get("/x")
    assert response.status_code == 429
    assert response.headers["retry-after"] == "3"
    assert response.json()["code"] == "RATE_LIMITED"


def test_a_refusal_survives_the_round_trip_through_harden_error() -> None:
    from hardenkit.errors import Refusal

    refusal = Refusal.retry_later(
        503, ErrorCode.SERVICE_UNAVAILABLE, "Later.", wait=2.2, extensions={"hint": "x"}
    )
    error = refusal.error()
    assert (error.status, error.code, error.detail) == (503, "SERVICE_UNAVAILABLE", "Later.")
    assert error.headers == {"Retry-After": "3"}
    assert error.refusal() == refusal


def test_retry_after_is_whole_seconds_rounded_up_and_never_zero() -> None:
    from hardenkit.errors import RETRY_SHORTLY_SECONDS, retry_after_seconds

    assert [retry_after_seconds(wait) for wait in (0, 0.2, 1.0, 1.01)] == [1, 1, 1, 2]
    assert retry_after_seconds(None) == RETRY_SHORTLY_SECONDS


def test_a_refusal_is_recorded_once_when_sent_not_when_built() -> None:
    from hardenkit import ErrorMiddleware
    from hardenkit.errors import Refusal, send_refusal

    sent: list[str] = []
    refusal = Refusal(429, ErrorCode.RATE_LIMITED, "Slow down.", on_sent=lambda: sent.append("x"))
    assert sent == []

    async def by_middleware(scope: object, receive: object, send: object) -> None:
        await send_refusal(send, scope, refusal)  # type: ignore[arg-type]

    async def by_raising(scope: object, receive: object, send: object) -> None:
        raise refusal.error()

    for app in (by_middleware, ErrorMiddleware(by_raising)):  # type: ignore[arg-type]
        response = TestClient(app).get("/x")  # type: ignore[arg-type]
        assert (response.status_code, response.json()["detail"]) == (429, "Slow down.")
    assert sent == ["x", "x"]

    async def endpoint(request: Request) -> Response:
        raise refusal.error()

    app = Starlette(
        routes=[Route("/x", endpoint)], exception_handlers={HardenError: harden_error_handler}
    )
    assert TestClient(app).get("/x").status_code == 429
    assert sent == ["x", "x", "x"]


def _outbound_app(http: ModuleType) -> tuple[FastAPI, list[int]]:
    # httpx or httpx2 (the OpenAI SDK's client): their errors are answered alike.
    calls: list[int] = []

    def refuse(request: Any) -> Any:
        calls.append(1)
        raise http.ConnectError("connection refused by db.internal:5432", request=request)

    def hang(request: Any) -> Any:
        raise http.ReadTimeout("read timed out from db.internal", request=request)

    registry = ResilienceRegistry()

    @resilient("rates-down", attempts=3, registry=registry)
    async def fetch_rates() -> dict[str, object]:
        async with http.AsyncClient(transport=http.MockTransport(refuse)) as client:
            return (await client.get("http://rates.internal/")).json()  # type: ignore[no-any-return]

    @resilient("rates-slow", timeout=0.05, attempts=1, registry=registry)
    async def slow_rates() -> None:
        await asyncio.sleep(5)

    app = FastAPI()

    @app.get("/rates")
    async def rates() -> dict[str, object]:
        return await fetch_rates()

    @app.get("/hanging")
    async def hanging() -> dict[str, object]:
        async with http.AsyncClient(transport=http.MockTransport(hang)) as client:
            return (await client.get("http://rates.internal/")).json()  # type: ignore[no-any-return]

    @app.get("/slow")
    async def slow() -> None:
        await slow_rates()

    install(app, HardenSettings(auth_mode="off"))
    return app, calls


@pytest.mark.parametrize("http", [httpx, httpx2], ids=["httpx", "httpx2"])
def test_an_unreachable_upstream_is_a_502_upstream_unavailable_not_a_500(
    http: ModuleType,
) -> None:
    app, calls = _outbound_app(http)
    response = TestClient(app).get("/rates")
    assert len(calls) == 3  # every attempt was made, then the failure escaped the handler
    assert response.status_code == 502
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == "UPSTREAM_UNAVAILABLE"
    assert body["request_id"] == response.headers["x-request-id"]
    assert "detail" not in body
    for leak in ("db.internal", "ConnectError", "refused", "rates-down"):
        assert leak not in response.text


@pytest.mark.parametrize("http", [httpx, httpx2], ids=["httpx", "httpx2"])
def test_an_upstream_that_does_not_answer_in_time_is_a_504_upstream_timeout(
    http: ModuleType,
) -> None:
    app, _ = _outbound_app(http)
    client = TestClient(app)
    for path in ("/hanging", "/slow"):
        response = client.get(path)
        assert response.status_code == 504, path
        assert response.json()["code"] == "UPSTREAM_TIMEOUT"
        assert "db.internal" not in response.text
        assert "rates-slow" not in response.text


async def _close_before_accept(websocket: WebSocket) -> None:
    await websocket.close(code=4001)


async def _accept_then_close(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.close(code=4001)


async def _crash_before_accept(websocket: WebSocket) -> None:
    raise RuntimeError("password=hunter2-in-the-message")


async def _crash_after_accept(websocket: WebSocket) -> None:
    await websocket.accept()
    raise RuntimeError("password=hunter2-in-the-message")


def _websocket_app() -> ErrorMiddleware:
    return ErrorMiddleware(
        Starlette(
            routes=[
                WebSocketRoute("/refuses", _close_before_accept),
                WebSocketRoute("/accepts", _accept_then_close),
                WebSocketRoute("/crashes", _crash_before_accept),
                WebSocketRoute("/crashes-later", _crash_after_accept),
            ]
        )
    )


def test_a_websocket_handler_that_crashes_gets_a_500_problem_or_a_1011_close() -> None:
    """Round 13: a crash before accept reached the server, which answered a bare 500
    (hypercorn logged the exception's text); HTTP crashes get a problem and our log."""
    client = TestClient(_websocket_app())
    with structlog.testing.capture_logs() as logs:
        with pytest.raises(WebSocketDenialResponse) as denied, client.websocket_connect("/crashes"):
            pass
        with (
            client.websocket_connect("/crashes-later") as websocket,
            pytest.raises(WebSocketDisconnect) as closed,
        ):
            websocket.receive_text()
    assert denied.value.status_code == 500
    assert denied.value.json()["code"] == "INTERNAL_ERROR"
    assert "hunter2" not in denied.value.text
    assert closed.value.code == 1011  # internal error, after the handshake
    crashes = [log for log in logs if log["event"] == "unhandled_exception"]
    assert [log["path"] for log in crashes] == ["/crashes", "/crashes-later"]


def test_a_handshake_closed_before_accept_is_answered_with_a_403_problem() -> None:
    # No route serves /nowhere (Starlette closes it), and /refuses closes it itself:
    # the server would answer both with a bare 403; the problem carries the format.
    client = TestClient(_websocket_app())
    for path in ("/nowhere", "/refuses"):
        with pytest.raises(WebSocketDenialResponse) as denied, client.websocket_connect(path):
            pass
        assert denied.value.status_code == 403
        assert denied.value.headers["content-type"] == "application/problem+json"
        assert denied.value.json()["code"] == "AUTHORIZATION_ERROR"
    # A close after the handshake is the app's own, and reaches the client as it is.
    with client.websocket_connect("/accepts") as websocket:
        with pytest.raises(WebSocketDisconnect) as closed:
            websocket.receive_text()
        assert closed.value.code == 4001


def close_code(client: TestClient, path: str) -> int:
    """The close code a client connected to ``path`` receives when it reads."""
    with client.websocket_connect(path) as websocket, pytest.raises(WebSocketDisconnect) as closed:
        websocket.receive_text()
    return closed.value.code


async def _serve_websocket(app: Any, path: str, *incoming: int) -> list[dict[str, object]]:
    """One WebSocket connection on a server without ``websocket.http.response``.

    The client connects, then leaves with each close code of ``incoming`` (1000 once
    they are used up). Returns what the app sent.
    """
    messages: list[dict[str, object]] = [{"type": "websocket.connect"}]
    messages += [{"type": "websocket.disconnect", "code": code} for code in incoming]
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        return messages.pop(0) if messages else {"type": "websocket.disconnect", "code": 1000}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope = {"type": "websocket", "path": path, "headers": [], "extensions": {}}
    await app(scope, receive, send)
    return sent


async def test_without_the_handshake_response_extension_the_close_is_left_to_the_server() -> None:
    sent = await _serve_websocket(_websocket_app(), "/nowhere")
    assert [message["type"] for message in sent] == ["websocket.close"]


async def test_without_the_handshake_response_extension_a_crash_is_logged_and_closed() -> None:
    with structlog.testing.capture_logs() as logs:
        sent = await _serve_websocket(_websocket_app(), "/crashes")
    assert sent == [{"type": "websocket.close", "code": 1011, "reason": ""}]
    assert [log["event"] for log in logs] == ["unhandled_exception"]


async def _leaves(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.receive_text()  # the client is gone: WebSocketDisconnect


async def _leaves_a_task_group(websocket: WebSocket) -> None:
    # Round 14: a reader and a writer in a task group end in an ExceptionGroup.
    await websocket.accept()
    async with asyncio.TaskGroup() as group:
        group.create_task(websocket.receive_text())


@pytest.mark.parametrize("leaves", [_leaves, _leaves_a_task_group])
async def test_a_client_that_left_is_no_crash(
    leaves: Callable[[WebSocket], Awaitable[None]],
) -> None:
    app = ErrorMiddleware(Starlette(routes=[WebSocketRoute("/leaves", leaves)]))
    with structlog.testing.capture_logs() as logs:
        sent = await _serve_websocket(app, "/leaves", 1001)  # nothing for the server to log
    assert [message["type"] for message in sent] == ["websocket.accept"]
    assert logs == []


def test_a_coded_refusal_raised_by_a_websocket_endpoint_is_answered_as_over_http() -> None:
    async def refuses(websocket: WebSocket) -> None:
        raise HardenError(ErrorCode.RATE_LIMITED, status=429, detail="Slow down.")

    client = TestClient(ErrorMiddleware(Starlette(routes=[WebSocketRoute("/ws", refuses)])))
    with pytest.raises(WebSocketDenialResponse) as denied, client.websocket_connect("/ws"):
        pass
    assert denied.value.status_code == 429
    assert denied.value.json()["code"] == "RATE_LIMITED"


def test_a_coded_refusal_after_the_handshake_closes_the_websocket_under_install() -> None:
    """Round 14: under install() Starlette's exception handlers answered a HardenError
    or HTTPException raised after accept with a response, which no server can send then
    (uvicorn logged a RuntimeError). It is a close now: 1008, or 1011 for a 5xx."""
    from starlette.exceptions import HTTPException

    async def refuses_later(websocket: WebSocket) -> None:
        await websocket.accept()
        raise HardenError(ErrorCode.RATE_LIMITED, status=429, detail="Slow down.")

    async def fails_later(websocket: WebSocket) -> None:
        await websocket.accept()
        raise HTTPException(503)

    app = Starlette(
        routes=[WebSocketRoute("/refuses", refuses_later), WebSocketRoute("/fails", fails_later)]
    )
    install(app, HardenSettings(auth_mode="off"))
    client = TestClient(app)
    assert close_code(client, "/refuses") == 1008
    assert close_code(client, "/fails") == 1011


def test_websocket_closes_the_app_asked_for_are_kept_and_nothing_is_sent_after_a_close() -> None:
    """Round 15: a handler raising WebSocketDisconnect(4001) to close got no close frame
    at all (1006), and an HTTPException after its own close() was answered with a
    response, a RuntimeError in the server."""
    from starlette.exceptions import HTTPException

    async def closes_by_raising(websocket: WebSocket) -> None:
        await websocket.accept()
        raise WebSocketDisconnect(4001)

    async def refuses_after_closing(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.close(code=4002)
        raise HTTPException(403)

    app = Starlette(
        routes=[
            WebSocketRoute("/raises", closes_by_raising),
            WebSocketRoute("/closed", refuses_after_closing),
        ]
    )
    install(app, HardenSettings(auth_mode="off"))
    client = TestClient(app)
    with structlog.testing.capture_logs() as logs:
        assert close_code(client, "/raises") == 4001
        assert close_code(client, "/closed") == 4002
    assert [log for log in logs if log["event"] == "unhandled_exception"] == []


@pytest.mark.parametrize(
    ("raised", "sent"), [(1006, 1000), (5000, 1000), (999, 1000), (4003, 4003)]
)
def test_a_close_raised_by_a_handler_goes_on_the_wire_with_a_code_allowed_there(
    raised: int, sent: int
) -> None:
    """Round 16: Starlette raises WebSocketDisconnect(1006) when a send fails; a code
    reserved for reporting, or none RFC 6455 defines, dropped the connection instead."""

    async def closes(websocket: WebSocket) -> None:
        await websocket.accept()
        raise WebSocketDisconnect(raised)

    client = TestClient(ErrorMiddleware(Starlette(routes=[WebSocketRoute("/ws", closes)])))
    assert close_code(client, "/ws") == sent


def test_a_disconnect_raised_before_the_handshake_is_refused_as_a_problem() -> None:
    async def refuses(websocket: WebSocket) -> None:
        raise WebSocketDisconnect(4003)

    client = TestClient(ErrorMiddleware(Starlette(routes=[WebSocketRoute("/ws", refuses)])))
    with pytest.raises(WebSocketDenialResponse) as denied, client.websocket_connect("/ws"):
        pass
    assert denied.value.status_code == 403
    assert denied.value.headers["content-type"] == "application/problem+json"


async def test_an_exception_handled_after_the_client_left_sends_nothing() -> None:
    """Round 16: a handler that caught the client's leave and raised HTTPException got
    a close sent to a gone client (a RuntimeError logged by uvicorn)."""
    from starlette.exceptions import HTTPException

    async def raises_after_leave(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            await websocket.receive_text()
        except WebSocketDisconnect:
            raise HTTPException(500) from None

    app = Starlette(routes=[WebSocketRoute("/ws", raises_after_leave)])
    install(app, HardenSettings(auth_mode="off"))
    sent = await _serve_websocket(app, "/ws", 1001)
    assert [message["type"] for message in sent] == ["websocket.accept"]
