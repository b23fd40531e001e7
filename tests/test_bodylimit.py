"""BodyLimitMiddleware and the bounded readers: bodies are bounded before anything holds them."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi import FastAPI
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.testclient import TestClient
from starlette.types import Message, Receive, Scope, Send

from hardenkit import (
    BodyLimitMiddleware,
    HardenError,
    HardenSettings,
    install,
    read_body,
    read_json,
)
from hardenkit.bodylimit import declared_length, parse_json

Messages = list[dict[str, Any]]


async def drive(app: Any, scope: Scope, chunks: list[bytes]) -> tuple[Messages, int, list[Message]]:
    """Run ``app`` once; return what it sent, how many request messages it read, and them."""
    pending: list[Message] = [
        {"type": "http.request", "body": chunk, "more_body": index < len(chunks) - 1}
        for index, chunk in enumerate(chunks)
    ]
    read: list[Message] = []
    sent: Messages = []

    async def receive() -> Message:
        message = pending.pop(0) if pending else {"type": "http.disconnect"}
        read.append(message)
        return message

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent, len(read), read


def http_scope(path: str = "/upload", headers: list[tuple[bytes, bytes]] | None = None) -> Scope:
    return {
        "type": "http",
        "method": "POST",
        "path": path,
        "root_path": "",
        "headers": headers or [],
        "query_string": b"",
    }


def status_of(sent: Messages) -> int:
    return int(next(m for m in sent if m["type"] == "http.response.start")["status"])


def body_of(sent: Messages) -> dict[str, Any]:
    raw = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    parsed: dict[str, Any] = json.loads(raw)
    return parsed


async def echo_length(scope: Scope, receive: Receive, send: Send) -> None:
    """A raw ASGI app that reads the whole body and answers with its length."""
    size = 0
    while True:
        message = await receive()
        size += len(message.get("body", b""))
        if not message.get("more_body", False):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(size).encode()})


async def test_a_declared_length_over_the_limit_is_refused_before_a_byte_is_read() -> None:
    app = BodyLimitMiddleware(echo_length, max_body_bytes=100)
    scope = http_scope(headers=[(b"content-length", b"200000000")])
    sent, reads, _ = await drive(app, scope, [b"x" * 50])
    assert reads == 0
    assert status_of(sent) == 413
    start = next(m for m in sent if m["type"] == "http.response.start")
    assert (b"content-type", b"application/problem+json") in start["headers"]
    assert (b"connection", b"close") in start["headers"]
    assert body_of(sent)["code"] == "PAYLOAD_TOO_LARGE"


async def test_a_chunked_body_is_refused_on_the_chunk_that_crosses_the_limit() -> None:
    app = BodyLimitMiddleware(echo_length, max_body_bytes=100)
    sent, reads, _ = await drive(app, http_scope(), [b"x" * 60, b"x" * 60, b"x" * 60, b"x"])
    assert reads == 2  # the third and fourth chunks are never read
    assert status_of(sent) == 413
    assert body_of(sent)["code"] == "PAYLOAD_TOO_LARGE"


async def test_a_body_at_the_limit_reaches_the_application_intact() -> None:
    app = BodyLimitMiddleware(echo_length, max_body_bytes=100)
    scope = http_scope(headers=[(b"content-length", b"100")])
    sent, _, _ = await drive(app, scope, [b"x" * 40, b"x" * 60])
    assert status_of(sent) == 200
    assert sent[-1]["body"] == b"100"


async def test_an_application_that_swallows_the_refusal_still_answers_413() -> None:
    async def careless(scope: Scope, receive: Receive, send: Send) -> None:
        try:
            while (await receive()).get("more_body", False):
                pass
        except Exception:  # noqa: S110 - the careless app this test is about
            pass
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    app = BodyLimitMiddleware(careless, max_body_bytes=10)
    sent, _, _ = await drive(app, http_scope(), [b"x" * 8, b"x" * 8, b"x" * 8])
    assert status_of(sent) == 413
    assert b"ok" not in b"".join(m.get("body", b"") for m in sent)


async def test_per_path_limits_match_the_route_path_under_a_root_path() -> None:
    app = BodyLimitMiddleware(echo_length, max_body_bytes=10, paths={"/uploads/*": 1000})
    mounted = {**http_scope("/svc/uploads/a"), "root_path": "/svc"}
    sent, _, _ = await drive(app, mounted, [b"x" * 500])
    assert status_of(sent) == 200
    sent, _, _ = await drive(app, {**http_scope("/svc/other"), "root_path": "/svc"}, [b"x" * 500])
    assert status_of(sent) == 413


async def test_websocket_and_lifespan_scopes_pass_through_untouched() -> None:
    seen: list[str] = []

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["type"])
        message = await receive()
        seen.append(message["type"])

    app = BodyLimitMiddleware(inner, max_body_bytes=1)

    async def receive() -> Message:
        return {"type": "websocket.receive", "bytes": b"x" * 1000}

    async def send(message: Message) -> None:
        raise AssertionError("nothing is sent for a WebSocket by the body limit")

    await app({"type": "websocket", "path": "/ws", "headers": []}, receive, send)
    assert seen == ["websocket", "websocket.receive"]


@pytest.mark.parametrize("limit", [0, -1, True, 1.5])
def test_a_limit_that_is_not_a_positive_whole_number_is_refused_at_construction(
    limit: Any,
) -> None:
    with pytest.raises(ValueError, match="body limit"):
        BodyLimitMiddleware(echo_length, max_body_bytes=limit)
    with pytest.raises(ValueError, match="body limit"):
        BodyLimitMiddleware(echo_length, paths={"/x": limit})


def test_several_content_lengths_count_as_the_largest() -> None:
    scope = http_scope(headers=[(b"content-length", b"5"), (b"content-length", b"5000")])
    assert declared_length(scope) == 5000
    assert declared_length(http_scope(headers=[(b"content-length", b"-5")])) is None


def test_settings_reject_a_malformed_per_path_limit() -> None:
    with pytest.raises(ValueError, match="only allowed at the end"):
        HardenSettings(max_body_bytes_paths={"/a*/b": 10})
    with pytest.raises(ValueError, match="at least 1 byte"):
        HardenSettings(max_body_bytes_paths={"/a": 0})


# --- installed: HARDENKIT_MAX_BODY_BYTES ahead of auth, per-path overrides --------------


async def _echo(request: Request) -> Response:
    return JSONResponse({"bytes": len(await request.body())})


def _installed(**settings: Any) -> TestClient:
    app = Starlette(
        routes=[
            Route("/public/echo", _echo, methods=["POST"]),
            Route("/private/echo", _echo, methods=["POST"]),
            Route("/uploads/echo", _echo, methods=["POST"]),
        ]
    )
    install(
        app,
        HardenSettings(
            jwt_secret="x" * 48,
            public_paths=["/public/*", "/uploads/*"],
            max_body_bytes=1000,
            max_body_bytes_paths={"/uploads/*": 5000},
            **settings,
        ),
    )
    return TestClient(app)


def test_install_refuses_an_oversized_body_before_auth_even_without_a_token() -> None:
    client = _installed()
    refused = client.post("/private/echo", content=b"x" * 1001)
    assert refused.status_code == 413
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["code"] == "PAYLOAD_TOO_LARGE"
    assert refused.headers["x-request-id"] == refused.json()["request_id"]
    assert "content-security-policy" in refused.headers
    assert client.post("/private/echo", content=b"x" * 10).status_code == 401


def test_install_counts_a_streamed_body_and_honours_the_per_path_override() -> None:
    client = _installed()

    def stream(size: int) -> Any:
        for _ in range(size // 100):
            yield b"x" * 100

    assert client.post("/public/echo", content=stream(900)).json() == {"bytes": 900}
    streamed = client.post("/public/echo", content=stream(1100))
    assert streamed.status_code == 413
    assert streamed.json()["code"] == "PAYLOAD_TOO_LARGE"
    assert client.post("/uploads/echo", content=b"x" * 4000).json() == {"bytes": 4000}
    assert client.post("/uploads/echo", content=b"x" * 5001).status_code == 413


def test_install_matches_the_body_limit_on_the_route_path_under_a_mount() -> None:
    inner = Starlette(routes=[Route("/uploads/echo", _echo, methods=["POST"])])
    install(
        inner,
        HardenSettings(
            public_paths=["/uploads/*"], max_body_bytes=10, max_body_bytes_paths={"/uploads/*": 500}
        ),
    )
    client = TestClient(Starlette(routes=[Mount("/v1", app=inner)]))
    assert client.post("/v1/uploads/echo", content=b"x" * 400).json() == {"bytes": 400}


# --- the readers -------------------------------------------------------------------------


def _reader_app() -> TestClient:
    async def login(request: Request) -> Response:
        data = await read_json(request, 64)
        again = await request.body()  # still readable after the bounded read
        return JSONResponse({"data": data, "again": len(again)})

    async def raw(request: Request) -> Response:
        return JSONResponse({"bytes": len(await read_body(request, 64))})

    app = Starlette(
        routes=[Route("/login", login, methods=["POST"]), Route("/raw", raw, methods=["POST"])]
    )
    install(app, HardenSettings(public_paths=["/login", "/raw"]))
    return TestClient(app)


def test_read_json_answers_400_to_malformed_json_and_413_past_its_limit() -> None:
    client = _reader_app()
    ok = client.post("/login", content=b'{"a": 1}')
    assert ok.json() == {"data": {"a": 1}, "again": 8}
    for bad in (b"{", b"\xff\xfe\xfa", b"[" * 50, b"[1,]"):
        response = client.post("/login", content=bad)
        assert response.status_code == 400, bad
        assert response.json()["code"] == "BAD_REQUEST"
    assert client.post("/login", content=b"[" * 65).status_code == 413
    assert client.post("/raw", content=b"x" * 64).json() == {"bytes": 64}
    assert client.post("/raw", content=iter([b"x" * 60, b"x" * 60])).status_code == 413


_LONE_SURROGATES = [
    b'{"password": "\\ud800"}',  # an escape
    b'{"password": "\\uDFFF x"}',
    b'{"\\udc80": 1}',  # in a key
    b'{"password": "\xed\xa0\x80"}',  # the UTF-8 bytes of one (json decodes surrogatepass)
    '{"p": "'.encode("utf-16-le") + b"\x00\xd8" + '"}'.encode("utf-16-le"),  # UTF-16
    b'["\\ud83d"]',  # the first half of a pair, alone
]


@pytest.mark.parametrize("body", _LONE_SURROGATES)
def test_json_holding_a_lone_surrogate_is_a_400_not_a_500_later(body: bytes) -> None:
    # A lone surrogate is no character: the handler's password.encode(), the JSON
    # response or a log line failed with a 500 (an attacker review, on the login route).
    with pytest.raises(HardenError, match="not valid JSON") as caught:
        parse_json(body)
    assert caught.value.status == 400
    response = _reader_app().post("/login", content=body)
    assert response.status_code == 400
    assert response.json()["code"] == "BAD_REQUEST"


@pytest.mark.parametrize(
    "body", [b"[NaN]", b'{"a": Infinity}', b"[-Infinity]", b"[1e999]", b"[-1e400]"]
)
def test_json_numbers_no_json_response_can_carry_are_a_400(body: bytes) -> None:
    # json.loads reads them (1e999 as infinity); a handler echoing them answered 500:
    # Starlette's JSONResponse refuses non-finite numbers (RFC 8259 has none).
    with pytest.raises(HardenError, match="not valid JSON"):
        parse_json(body)
    assert _reader_app().post("/login", content=body).status_code == 400


def test_parse_json_takes_text_as_well_as_bytes() -> None:
    assert parse_json('{"a": [1, 2.5, "\u00e9"]}') == {"a": [1, 2.5, "\u00e9"]}
    for bad in ('["\ud800"]', "[NaN]", "{"):  # a str may hold a lone surrogate itself
        with pytest.raises(HardenError, match="not valid JSON"):
            parse_json(bad)
    assert parse_json('["1e308", 1e308]') == ["1e308", 1e308]  # the largest floats are fine


def test_json_text_spelled_with_surrogate_escapes_is_kept_when_it_is_text() -> None:
    assert parse_json(b'["\\ud83d\\ude00"]') == ["\U0001f600"]  # a pair: one character
    assert parse_json(b'["\\\\ud800"]') == ["\\ud800"]  # an escaped backslash, then text
    assert parse_json('["\u00e9"]'.encode("utf-16")) == ["\u00e9"]  # UTF-16 with a BOM


def test_deeply_nested_json_is_a_client_error_not_a_crash() -> None:
    with pytest.raises(HardenError, match="not valid JSON") as caught:
        parse_json(b"[" * 4000 + b"]" * 4000)
    assert caught.value.status == 400


@given(st.binary(max_size=200))
def test_parse_json_either_returns_a_value_or_raises_a_400(body: bytes) -> None:
    status = None
    try:
        value = parse_json(body)
    except HardenError as error:  # anything else propagates and fails the test
        status = error.status
    else:  # whatever it returns is text a response or a log line can encode
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    assert status in (None, 400)


@given(st.text(max_size=30))  # no surrogates: text
def test_parse_json_reads_every_text_as_the_standard_parser_does(text: str) -> None:
    for body in (json.dumps([text]).encode(), json.dumps([text], ensure_ascii=False).encode()):
        assert parse_json(body) == [text]


def test_an_app_wide_limit_over_64_mib_is_warned_about_naming_the_setting() -> None:
    [warning] = [
        problem
        for problem in HardenSettings(max_body_bytes=65 * 1024 * 1024).startup_warnings()
        if problem.setting == "HARDENKIT_MAX_BODY_BYTES"
    ]
    assert "HARDENKIT_MAX_BODY_BYTES_PATHS" in warning.message
    assert not [
        problem
        for problem in HardenSettings(max_body_bytes_paths={"/up/*": 10**9}).startup_warnings()
        if problem.setting.startswith("HARDENKIT_MAX_BODY_BYTES")
    ]


class Order(BaseModel):
    note: str


def test_a_fastapi_body_model_route_still_answers_413_when_fastapi_catches_the_refusal() -> None:
    # FastAPI turns any exception while it reads a body into its own 400; the layer
    # replaces whatever the application answers once the body crossed the limit.
    app = FastAPI()

    @app.post("/orders")
    async def create(order: Order) -> dict[str, int]:
        return {"length": len(order.note)}

    install(app, HardenSettings(public_paths=["/orders"], max_body_bytes=200))
    client = TestClient(app)
    assert client.post("/orders", json={"note": "x" * 50}).json() == {"length": 50}

    def stream() -> Any:
        yield b'{"note": "'
        for _ in range(10):
            yield b"x" * 50
        yield b'"}'

    refused = client.post("/orders", content=stream(), headers={"content-type": "application/json"})
    assert refused.status_code == 413
    assert refused.json()["code"] == "PAYLOAD_TOO_LARGE"


@pytest.mark.parametrize(
    ("http_version", "headers"),
    [("1.1", [(b"transfer-encoding", b"chunked")]), ("2", []), ("1.1", [])],
    ids=["http/1.1 chunked", "http/2 without content-length", "http/1.1 unframed"],
)
async def test_a_body_without_content_length_is_counted_unless_http_1_framing_says_none(
    http_version: str, headers: list[tuple[bytes, bytes]]
) -> None:
    app = BodyLimitMiddleware(echo_length, max_body_bytes=100)
    scope = {**http_scope(headers=headers), "http_version": http_version}
    sent, _, _ = await drive(app, scope, [b"x" * 60, b"x" * 60])
    if http_version == "1.1" and not headers:
        # HTTP/1.1 without Content-Length or Transfer-Encoding has no body (RFC 9112
        # 6.3); a server never delivers one, so the layer does not wrap receive.
        assert status_of(sent) == 200
    else:
        assert status_of(sent) == 413


async def test_a_small_content_length_next_to_transfer_encoding_does_not_skip_the_count() -> None:
    # Transfer-Encoding governs the body when both are sent: the declared 10 bytes
    # must not let a chunked body through uncounted.
    app = BodyLimitMiddleware(echo_length, max_body_bytes=100)
    headers = [(b"content-length", b"10"), (b"transfer-encoding", b"chunked")]
    scope = {**http_scope(headers=headers), "http_version": "1.1"}
    sent, _, _ = await drive(app, scope, [b"x" * 60, b"x" * 60])
    assert status_of(sent) == 413
