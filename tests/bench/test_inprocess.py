"""Requests driven through uvicorn's protocol in-process, and the instruction counter."""

from __future__ import annotations

import shutil

import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from benchmarks import _throughput_apps
from benchmarks._inprocess import _complete, drive, header_names
from benchmarks._throughput_apps import hardenkit_environment
from benchmarks.instructions import count_instructions, parse_collected


@pytest.fixture
def bench_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in hardenkit_environment().items():
        monkeypatch.setenv(name, value)


@pytest.mark.usefixtures("bench_settings")
@pytest.mark.parametrize("factory", ["bare", "hardened"])
async def test_every_request_goes_through_the_server_protocol_and_is_answered(
    factory: str,
) -> None:
    seen: list[str] = []
    spent = await drive(factory, 40, connections=4, warm_up=4, around=seen.append)
    assert seen == ["start", "stop"]
    assert spent > 0


@pytest.mark.usefixtures("bench_settings")
async def test_a_response_that_is_not_200_fails_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARDENKIT_JWT_AUDIENCE", "another-audience")  # the token is refused
    with pytest.raises(RuntimeError, match="not 200"):
        await drive("hardened", 4, connections=2, warm_up=0)


def _losing_a_header_after(answers: int) -> Starlette:
    served = [0]

    async def me(request: object) -> Response:
        served[0] += 1
        headers = {"x-kept": "1"} if served[0] <= answers else {}
        return JSONResponse({"ok": True}, headers=headers)

    return Starlette(routes=[Route("/api/me", me)])


async def test_a_run_whose_responses_lose_a_header_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # What a broken change looks like: faster because it sends less. The 4 warm-up
    # responses have the header, the measured ones lose it.
    monkeypatch.setattr(
        _throughput_apps, "losing", lambda: _losing_a_header_after(4), raising=False
    )
    with pytest.raises(RuntimeError, match="header names changed"):
        await drive("losing", 8, connections=2, warm_up=4)
    monkeypatch.setattr(
        _throughput_apps, "keeping", lambda: _losing_a_header_after(99), raising=False
    )
    assert await drive("keeping", 8, connections=2, warm_up=4) > 0


def test_header_names_are_read_in_order_without_values() -> None:
    response = b"HTTP/1.1 200 OK\r\ncontent-type: a\r\nX-Request-ID: 1\r\n\r\nbody: x"
    assert header_names(response) == [b"content-type", b"x-request-id"]


def test_a_response_is_complete_when_its_whole_declared_body_arrived() -> None:
    head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 4\r\n\r\n"
    assert not _complete(bytearray(head[:20]))
    assert not _complete(bytearray(head + b"{}"))
    assert _complete(bytearray(head + b'{"":'))


def test_callgrind_count_is_read_from_its_summary() -> None:
    log = "==42== Events    : Ir\n==42== Collected : 123456789\n==42==\n==42== I   refs: 1\n"
    assert parse_collected(log) == 123456789
    with pytest.raises(ValueError, match="no instruction count"):
        parse_collected("==42== Callgrind, a call-graph generating cache profiler\n")


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed")
def test_instructions_per_request_of_the_full_stack_exceed_the_bare_apps() -> None:
    bare = count_instructions("bare", 100)
    hardened = count_instructions("hardened", 100)
    assert 50_000 < bare < hardened
