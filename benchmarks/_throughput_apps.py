"""The apps the throughput benchmark serves under uvicorn, all on the route ``/api/me``.

Factories for ``uvicorn --factory``; the benchmark passes their options in the
environment (``HARDENKIT_*`` for hardenkit's settings, ``BENCH_*`` for the rest):

* ``bare``: plain Starlette, the ceiling;
* ``peer``: the stack users assemble from peer libraries (``_peer_stack.py``), slowapi on
  ``BENCH_PEER_STORAGE`` (``memory://`` or a Redis URL);
* ``hardened``: the same route behind ``hardenkit.install`` with the full stack (limits
  high enough never to refuse), memory or Redis as ``HARDENKIT_REDIS_URL`` says;
* ``bare_io`` / ``hardened_io``: the same with a handler awaiting 1 ms of I/O;
* ``lean``: the full stack's essential work in one lean middleware with none of its
  guarantees (``_lean_stack.py``), the same response headers: a reference for what the
  guarantees cost;
* ``bare_headers``: plain Starlette sending the response headers the full stack sends
  (captured from one request to ``hardened``), with no other work: what those headers
  alone cost in the server (uvicorn checks and writes each one), the floor under any
  stack that sends them;
* ``layer``: bare Starlette behind one layer of the installed stack, number
  ``BENCH_LAYER`` in ``install()``'s order (the layers that need a principal come with
  the auth layer, see ``bench_layers.py``).
"""

from __future__ import annotations

import asyncio
import os
import time

import jwt
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from benchmarks._lean_stack import lean_app
from benchmarks._peer_stack import peer_app
from hardenkit import get_principal, install, load_settings

# Random, so hardenkit's secret-strength check has nothing to warn about; not a secret.
SECRET = "pAaSr2wEfW0GvKl2wqFKw-8Pa0As4wDVtTlEdatig2BpeU4DqRCF1qxiSz_VC08F"
ISSUER = "https://bench.hardenkit.invalid"
AUDIENCE = "bench"
CORS_ORIGIN = "https://app.bench.invalid"
# Never refuses during a run: every figure is the cost of an admitted request.
RATE = "100000000/second"
IO_SECONDS = 0.001


def token() -> str:
    """The one token every stack is sent: HS256, with the tenant claim."""
    now = int(time.time())
    claims = {
        "sub": "alice", "tenant_id": "acme", "iss": ISSUER, "aud": AUDIENCE,
        "iat": now, "exp": now + 3600,
    }  # fmt: skip
    return jwt.encode(claims, SECRET, algorithm="HS256")


def hardenkit_environment() -> dict[str, str]:
    """hardenkit's settings for the benchmark: the full stack, limits that never refuse."""
    return {
        "HARDENKIT_JWT_SECRET": SECRET,
        "HARDENKIT_JWT_ISSUER": ISSUER,
        "HARDENKIT_JWT_AUDIENCE": AUDIENCE,
        "HARDENKIT_CORS_ORIGINS": CORS_ORIGIN,
        "HARDENKIT_RATE_LIMIT_DEFAULT": RATE,
        "HARDENKIT_RATE_LIMIT_TENANT": RATE,
        "HARDENKIT_LOG_LEVEL": "WARNING",
    }


def server_environment() -> dict[str, str]:
    """This process's environment without ``HARDENKIT_*`` or ``BENCH_*``, plus the bench's."""
    inherited = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("HARDENKIT_", "BENCH_"))
    }
    return {**inherited, **hardenkit_environment()}


async def me(request: Request) -> Response:
    principal = get_principal()
    subject = principal.subject if principal else "alice"
    tenant = principal.tenant if principal else "acme"
    return JSONResponse({"subject": subject, "tenant": tenant})


async def me_io(request: Request) -> Response:
    await asyncio.sleep(IO_SECONDS)
    return await me(request)


def bare() -> Starlette:
    return Starlette(routes=[Route("/api/me", me)])


def bare_io() -> Starlette:
    return Starlette(routes=[Route("/api/me", me_io)])


def hardened() -> Starlette:
    app = bare()
    install(app, load_settings())
    return app


def hardened_io() -> Starlette:
    app = bare_io()
    install(app, load_settings())
    return app


def stack_headers() -> list[tuple[bytes, bytes]]:
    """The headers the full stack adds to the benchmark route's response, as sent."""
    with TestClient(hardened(), base_url="http://127.0.0.1:8000") as client:
        sent = client.get("/api/me", headers={"Authorization": f"Bearer {token()}"})
    bare_sends = {"content-length", "content-type"}
    return [
        (name.encode("latin-1"), value.encode("latin-1"))
        for name, value in sent.headers.multi_items()
        if name not in bare_sends
    ]


class _SendHeaders:
    """Adds fixed headers to every response: no other work."""

    def __init__(self, app: ASGIApp, headers: list[tuple[bytes, bytes]]) -> None:
        self.app = app
        self.headers = headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *self.headers]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def bare_headers() -> Starlette:
    return Starlette(
        routes=[Route("/api/me", me)],
        middleware=[Middleware(_SendHeaders, headers=stack_headers())],
    )


def lean() -> Starlette:
    computed = {b"ratelimit-policy", b"ratelimit", b"x-request-id"}  # per request
    return lean_app(
        secret=SECRET,
        issuer=ISSUER,
        audience=AUDIENCE,
        per_second=int(RATE.partition("/")[0]),
        static_headers=[item for item in stack_headers() if item[0] not in computed],
        routes=[Route("/api/me", me)],
    )


def peer() -> Starlette:
    return peer_app(
        storage_uri=os.environ["BENCH_PEER_STORAGE"],
        secret=SECRET,
        issuer=ISSUER,
        audience=AUDIENCE,
        cors_origin=CORS_ORIGIN,
        rate=RATE,
    )


def installed_layers() -> list[Middleware]:
    """The layers ``install()`` adds for the benchmark settings, outermost first."""
    return list(install(bare(), load_settings()).middleware)


def layer() -> Starlette:
    """The installed app with only the layers numbered in ``BENCH_LAYER`` (e.g. ``9,10``)."""
    app = bare()
    kit = install(app, load_settings())
    wanted = [int(index) for index in os.environ["BENCH_LAYER"].split(",") if index]
    # Starlette builds its middleware stack on the first request, from user_middleware:
    # the app keeps everything else install() did (handlers, health routes, lifespan).
    app.user_middleware = [kit.middleware[index] for index in wanted]
    return app
