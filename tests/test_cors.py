"""The CORS layer install() adds: Starlette's, with a cheaper path for requests without Origin."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.middleware.cors import CORSMiddleware as StarletteCORS
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from hardenkit._cors import CORSMiddleware, with_vary_origin
from tests.headers.asgi import call

ORIGIN = "https://app.example"
names = st.sampled_from([b"vary", b"content-type", b"x-other", b"cache-control"])
values = st.binary(min_size=0, max_size=12).filter(lambda value: b"\r" not in value)
header_lists = st.lists(st.tuples(names, values), max_size=6)


def starlette_vary(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """What Starlette's CORS layer does to a response to a request without Origin."""
    message: dict[str, Any] = {"headers": list(headers)}
    mutable = MutableHeaders(scope=message)
    mutable["Vary"] = ", ".join([*mutable.getlist("Vary"), "Origin"])
    return list(message["headers"])


@given(header_lists)
def test_vary_origin_is_added_exactly_as_starlette_adds_it(
    headers: list[tuple[bytes, bytes]],
) -> None:
    assert with_vary_origin(headers) == starlette_vary(headers)


async def page(request: Request) -> Response:
    return PlainTextResponse("ok", headers={"Vary": "Accept-Encoding"})


def layers() -> list[Any]:
    options: dict[str, Any] = {"allow_origins": [ORIGIN], "allow_credentials": True}
    app = Starlette(routes=[Route("/", page, methods=["GET", "POST"])])
    return [CORSMiddleware(app, **options), StarletteCORS(app, **options)]


async def test_every_request_is_answered_as_starlettes_cors_answers_it() -> None:
    requests = [
        [],
        [(b"origin", ORIGIN.encode())],
        [(b"origin", b"https://evil.example")],
        [
            (b"origin", ORIGIN.encode()),
            (b"access-control-request-method", b"POST"),
        ],
    ]
    for headers in requests:
        method = "OPTIONS" if len(headers) == 2 else "GET"
        ours, theirs = [
            await call(layer, "/", method=method, headers=headers) for layer in layers()
        ]
        assert ours.status == theirs.status
        assert ours.raw_headers == theirs.raw_headers
        assert ours.body == theirs.body
