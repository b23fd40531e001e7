from __future__ import annotations

import re

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient, WebSocketDenialResponse
from starlette.websockets import WebSocket

from hardenkit import ErrorMiddleware, RequestIdMiddleware, get_request_id
from hardenkit.context import request_id_var, trace_id_var
from hardenkit.errors import ErrorCode, Refusal, send_refusal
from hardenkit.requestid import generate_request_id, is_valid_request_id

VALID = re.compile(r"[A-Za-z0-9._:-]{8,128}")


async def echo(request: Request) -> Response:
    return JSONResponse({"request_id": get_request_id(), "trace_id": trace_id_var.get()})


async def sets_own_header(request: Request) -> Response:
    return PlainTextResponse("x", headers={"X-Request-ID": "from-the-app-123"})


async def ws_endpoint(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text(get_request_id() or "")
    await websocket.close()


def make_client(**options: object) -> TestClient:
    # Most tests are about ids a caller sent and the middleware kept: trust="any" unless
    # the test says otherwise (the default keeps none, see the test below).
    if "trust_incoming" not in options:
        options.setdefault("trust", "any")
    app = Starlette(
        routes=[
            Route("/", echo),
            Route("/own", sets_own_header),
            WebSocketRoute("/ws", ws_endpoint),
        ]
    )
    return TestClient(RequestIdMiddleware(ErrorMiddleware(app), **options))  # type: ignore[arg-type]


def test_valid_incoming_id_is_kept_and_echoed() -> None:
    incoming = "3f2b8f0e-6a43-4b8e-9f53-9a0d6f1f2c11"
    response = make_client().get("/", headers={"X-Request-ID": incoming})
    assert response.headers["x-request-id"] == incoming
    assert response.json()["request_id"] == incoming


def test_used_alone_the_middleware_keeps_no_callers_id_unless_told_whose() -> None:
    # Fail closed, as HARDENKIT_REQUEST_ID_TRUST: a client choosing the id its requests
    # are logged and answered under (a victim's) is opted into, never the default.
    incoming = "3f2b8f0e-6a43-4b8e-9f53-9a0d6f1f2c11"
    app = RequestIdMiddleware(ErrorMiddleware(Starlette(routes=[Route("/", echo)])))
    assert app.trust == "proxies"
    response = TestClient(app).get("/", headers={"X-Request-ID": incoming})  # type: ignore[arg-type]
    assert response.headers["x-request-id"] != incoming
    behind_proxy = RequestIdMiddleware(
        ErrorMiddleware(Starlette(routes=[Route("/", echo)])), trusted_proxies=["10.0.0.0/8"]
    )
    from_proxy = TestClient(behind_proxy, client=("10.0.0.7", 50000))  # type: ignore[arg-type]
    assert from_proxy.get("/", headers={"X-Request-ID": incoming}).headers["x-request-id"] == (
        incoming
    )


def test_missing_id_is_generated_as_32_hex_characters() -> None:
    response = make_client().get("/")
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"])
    assert response.json()["request_id"] == response.headers["x-request-id"]


def test_each_request_gets_a_different_generated_id() -> None:
    client = make_client()
    ids = {client.get("/").headers["x-request-id"] for _ in range(20)}
    assert len(ids) == 20


def test_oversized_id_is_replaced_and_never_echoed() -> None:
    forged = "a" * 129
    response = make_client().get("/", headers={"X-Request-ID": forged})
    assert response.headers["x-request-id"] != forged
    assert forged not in response.text


def test_log_injection_id_is_replaced_and_never_echoed() -> None:
    forged = "abcdefgh\\r\\nSet-Cookie: x=1"
    response = make_client().get("/", headers={"X-Request-ID": forged})
    assert response.headers["x-request-id"] != forged
    assert "Set-Cookie" not in response.text


def test_too_short_id_is_replaced() -> None:
    response = make_client().get("/", headers={"X-Request-ID": "abc"})
    assert response.headers["x-request-id"] != "abc"


@given(st.binary(min_size=0, max_size=300))
def test_garbage_ids_are_echoed_only_when_they_match_the_strict_pattern(raw: bytes) -> None:
    value = raw.decode("latin-1")
    if "\n" in value or "\r" in value or "\x00" in value:
        value = value.replace("\n", "").replace("\r", "").replace("\x00", "")
    stripped = value.strip(" \t")
    response = make_client().get("/", headers={"X-Request-ID": value.encode("latin-1")})  # type: ignore[dict-item]
    echoed = response.headers["x-request-id"]
    assert VALID.fullmatch(echoed)
    if echoed == stripped:
        assert VALID.fullmatch(stripped)


@given(st.text(min_size=0, max_size=200))
def test_validator_accepts_exactly_the_documented_pattern(value: str) -> None:
    assert is_valid_request_id(value) == (VALID.fullmatch(value) is not None and value.isascii())


def test_generated_ids_pass_the_validator() -> None:
    assert all(is_valid_request_id(generate_request_id()) for _ in range(100))


def test_untrusted_mode_always_generates() -> None:
    incoming = "client-chosen-id-1234"
    response = make_client(trust_incoming=False).get("/", headers={"X-Request-ID": incoming})
    assert response.headers["x-request-id"] != incoming


def test_header_name_is_configurable() -> None:
    response = make_client(header_name="X-Correlation-ID").get(
        "/", headers={"X-Correlation-ID": "corr-12345678"}
    )
    assert response.headers["x-correlation-id"] == "corr-12345678"
    assert "x-request-id" not in response.headers


def test_invalid_header_name_fails_at_construction() -> None:
    import pytest

    with pytest.raises(ValueError, match="header_name"):
        RequestIdMiddleware(echo, header_name="bad header")  # type: ignore[arg-type]


def test_response_never_carries_two_request_id_headers() -> None:
    response = make_client().get("/own", headers={"X-Request-ID": "incoming-1234"})
    values = response.headers.get_list("x-request-id")
    assert values == ["incoming-1234"]


def test_request_id_is_on_a_500_raised_deep_in_a_handler() -> None:
    from hardenkit import HardenSettings, install

    async def deep(request: Request) -> Response:
        def level3() -> None:
            raise RuntimeError("db password=hunter2 leaked")

        level3()
        return Response()

    app = Starlette(routes=[Route("/deep", deep)])
    install(app, HardenSettings(auth_mode="off", request_id_trust="any"))
    response = TestClient(app).get("/deep", headers={"X-Request-ID": "trace-me-12345"})
    assert response.status_code == 500
    assert response.headers["x-request-id"] == "trace-me-12345"
    assert response.json()["request_id"] == "trace-me-12345"
    assert "hunter2" not in response.text


async def test_request_id_is_on_a_500_from_a_bare_asgi_app() -> None:
    async def crashing(scope: object, receive: object, send: object) -> None:
        raise RuntimeError("boom")

    messages: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, object]) -> None:
        messages.append(message)

    scope = {
        "type": "http",
        "method": "GET",
        "path": "/",
        "headers": [(b"x-request-id", b"bare-app-0001")],
    }
    await RequestIdMiddleware(ErrorMiddleware(crashing), trust="any")(scope, receive, send)  # type: ignore[arg-type]
    start = messages[0]
    assert start["status"] == 500
    assert (b"x-request-id", b"bare-app-0001") in start["headers"]  # type: ignore[operator]


def test_valid_traceparent_records_trace_id() -> None:
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    response = make_client().get("/", headers={"traceparent": f"00-{trace}-00f067aa0ba902b7-01"})
    assert response.json()["trace_id"] == trace


def test_malformed_or_all_zero_traceparent_is_ignored() -> None:
    client = make_client()
    for bad in (
        "garbage",
        "00-" + "0" * 32 + "-00f067aa0ba902b7-01",
        "ff-" + "a" * 32 + "-" + "b" * 16 + "-01",
    ):
        assert client.get("/", headers={"traceparent": bad}).json()["trace_id"] is None


def test_websocket_accept_carries_the_request_id() -> None:
    with make_client().websocket_connect("/ws", headers={"X-Request-ID": "ws-request-0001"}) as ws:
        assert ws.receive_text() == "ws-request-0001"


def test_context_is_reset_after_the_request() -> None:
    make_client().get("/")
    assert request_id_var.get() is None


async def _get(app: object, peer: str, request_id: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, client=(peer, 40000))  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
        return await client.get("/", headers={"X-Request-ID": request_id})


def _echo_app(**options: object) -> object:
    return RequestIdMiddleware(ErrorMiddleware(Starlette(routes=[Route("/", echo)])), **options)  # type: ignore[arg-type]


async def test_under_proxies_trust_a_client_id_is_replaced_and_the_used_id_answered() -> None:
    app = _echo_app(trust="proxies", trusted_proxies=["10.0.0.0/8"])
    response = await _get(app, "203.0.113.7", "victim-id-from-an-error-page")
    used = response.headers["x-request-id"]
    assert used != "victim-id-from-an-error-page"
    assert re.fullmatch(r"[0-9a-f]{32}", used)
    assert response.json()["request_id"] == used


async def test_under_proxies_trust_the_id_a_trusted_proxy_sends_is_kept() -> None:
    app = _echo_app(trust="proxies", trusted_proxies=["10.0.0.0/8"])
    response = await _get(app, "10.0.0.2", "edge-assigned-0001")
    assert response.headers["x-request-id"] == "edge-assigned-0001"
    assert response.json()["request_id"] == "edge-assigned-0001"


async def test_under_none_trust_even_a_trusted_proxy_id_is_replaced() -> None:
    app = _echo_app(trust="none", trusted_proxies=["10.0.0.0/8"])
    response = await _get(app, "10.0.0.2", "edge-assigned-0001")
    assert response.headers["x-request-id"] != "edge-assigned-0001"
    assert response.json()["request_id"] == response.headers["x-request-id"]


async def test_under_any_trust_a_client_id_is_kept() -> None:
    response = await _get(_echo_app(trust="any"), "203.0.113.7", "client-chosen-0001")
    assert response.headers["x-request-id"] == "client-chosen-0001"


def test_unknown_trust_fails_at_construction_naming_the_setting() -> None:
    with pytest.raises(ValueError, match="HARDENKIT_REQUEST_ID_TRUST: 'clients'"):
        RequestIdMiddleware(echo, trust="clients")  # type: ignore[arg-type]


async def test_installed_stack_replaces_a_client_id_by_default_and_keeps_a_proxy_id() -> None:
    from hardenkit import HardenSettings, install

    app = Starlette(routes=[Route("/", echo)])
    install(app, HardenSettings(auth_mode="off", trusted_proxies=["10.0.0.0/8"]))
    replaced = await _get(app, "203.0.113.7", "victim-id-from-an-error-page")
    assert replaced.headers["x-request-id"] != "victim-id-from-an-error-page"
    assert replaced.json()["request_id"] == replaced.headers["x-request-id"]
    kept = await _get(app, "10.0.0.2", "edge-assigned-0001")
    assert kept.headers["x-request-id"] == "edge-assigned-0001"


def test_refused_websocket_handshake_carries_the_request_id() -> None:
    async def refuse(scope: dict[str, object], receive: object, send: object) -> None:
        refusal = Refusal(401, ErrorCode.AUTHENTICATION_ERROR)
        await send_refusal(send, scope, refusal)  # type: ignore[arg-type]

    client = TestClient(RequestIdMiddleware(refuse, trust="any"))  # type: ignore[arg-type]
    with (
        pytest.raises(WebSocketDenialResponse) as refused,
        client.websocket_connect("/ws", headers={"X-Request-ID": "ws-refused-0001"}),
    ):
        pass
    assert refused.value.status_code == 401
    assert refused.value.headers["x-request-id"] == "ws-refused-0001"


async def test_a_traceparent_is_trusted_exactly_like_a_request_id() -> None:
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    app = _echo_app(trust="proxies", trusted_proxies=["10.0.0.0/8"])
    headers = {"traceparent": f"00-{trace}-00f067aa0ba902b7-01"}
    for peer, kept in (("203.0.113.7", None), ("10.0.0.2", trace)):
        transport = httpx.ASGITransport(app=app, client=(peer, 40000))  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
            response = await client.get("/", headers=headers)
        assert response.json()["trace_id"] == kept, peer
