"""Request id middleware against asgi-correlation-id, both on a bare Starlette app."""

from __future__ import annotations

from asgi_correlation_id import CorrelationIdMiddleware
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from benchmarks._harness import AsgiCall, Row, compare_async
from hardenkit import RequestIdMiddleware


async def hello(request: Request) -> Response:
    return PlainTextResponse("hello")


def _app() -> Starlette:
    return Starlette(routes=[Route("/", hello)])


def run(quick: bool) -> list[Row]:
    number, repeat = (2_000, 5) if quick else (10_000, 9)
    rows: list[Row] = []
    for label, headers in (
        ("overhead per request, id generated", []),
        (
            "overhead per request, valid id sent",
            [(b"x-request-id", b"3f2b8f0e-6a43-4b8e-9f53-9a0d6f1f2c11")],
        ),
    ):
        subjects = {
            "bare": AsgiCall(_app(), headers=headers),
            # Keeps the id it is sent, as asgi-correlation-id does: the same work.
            "hardenkit": AsgiCall(RequestIdMiddleware(_app(), trust="any"), headers=headers),
            "asgi-correlation-id": AsgiCall(CorrelationIdMiddleware(_app()), headers=headers),
        }
        times = compare_async(subjects, number=number, repeat=repeat)
        bare = times["bare"]
        rows.append(
            Row(
                piece="request id",
                figure=label,
                ours=(times["hardenkit"] - bare) * 1e6,
                peer_name="asgi-correlation-id",
                peer=(times["asgi-correlation-id"] - bare) * 1e6,
                max_ratio=1.0,
            )
        )
    return rows
