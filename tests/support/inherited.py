"""Pipelined requests served in-process the way uvicorn serves them.

For the tests of the facts in ``hardenkit.context``.

uvicorn (httptools and h11 alike) starts the next pipelined HTTP/1.1 request from inside
the previous one's last ``send``, so the new request's task copies that request's
context. :func:`pipelined` does the same with any ASGI app.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message

from hardenkit import HardenSettings, install
from hardenkit.context import (
    client_ip_var,
    principal_var,
    remaining_time,
    request_id_var,
    trace_id_var,
)

SECRET = "facts-" + "s" * 58
ISSUER = "https://issuer.facts.invalid"
AUDIENCE = "facts-api"


def bearer(tenant: str, subject: str = "alice") -> dict[str, str]:
    """An ``Authorization`` header with a token :func:`hardened` apps accept."""
    now = int(time.time())
    claims = {"sub": subject, "tenant_id": tenant, "iss": ISSUER, "aud": AUDIENCE}
    token = jwt.encode({**claims, "iat": now, "exp": now + 300}, SECRET, algorithm="HS256")
    return {"Authorization": f"Bearer {token}"}


def hardened(app: Starlette, **settings: Any) -> Starlette:
    """``app`` with ``install()``, accepting :func:`bearer` tokens."""
    install(
        app,
        HardenSettings(jwt_secret=SECRET, jwt_issuer=ISSUER, jwt_audience=AUDIENCE, **settings),
    )
    return app


@dataclass(frozen=True)
class Sent:
    """One request of a pipeline."""

    path: str
    headers: dict[str, str] = field(default_factory=dict)
    client: str = "203.0.113.9"
    method: str = "GET"


@dataclass
class Answer:
    """What the app answered."""

    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def json(self) -> Any:
        import json

        return json.loads(self.body)


async def pipelined(
    app: ASGIApp, *requests: Sent, timeout: float = 10.0, pathsend: bool = False
) -> list[Answer]:
    """Serve ``requests`` in order, each started from inside the previous one's last send.

    ``pathsend``: offer the ``http.response.pathsend`` extension (a file response's last
    message is then the file's path).
    """
    answers = [Answer() for _ in requests]
    tasks: list[asyncio.Task[None]] = []

    async def serve(index: int) -> None:
        sent = requests[index]
        path, _, query = sent.path.partition("?")
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": sent.method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": query.encode(),
            "headers": [(k.lower().encode(), v.encode()) for k, v in sent.headers.items()],
            "client": (sent.client, 50000),
            "server": ("127.0.0.1", 8000),
        }
        if pathsend:
            scope["extensions"] = {"http.response.pathsend": {}}
        received = False

        async def receive() -> Message:
            nonlocal received
            if received:
                await asyncio.sleep(3600)  # a connection that stays open
            received = True
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Message) -> None:
            answer = answers[index]
            if message["type"] == "http.response.start":
                answer.status = message["status"]
                answer.headers = {k.decode(): v.decode() for k, v in message.get("headers", ())}
            elif message["type"] in ("http.response.body", "http.response.pathsend"):
                if "path" in message:
                    answer.body += Path(message["path"]).read_bytes()
                answer.body += message.get("body", b"")
                if not message.get("more_body", False) and index + 1 < len(requests):
                    # As uvicorn: the next request's task starts here, in this context.
                    tasks.append(asyncio.get_running_loop().create_task(serve(index + 1)))

        await app(scope, receive, send)

    tasks.append(asyncio.get_running_loop().create_task(serve(0)))
    async with asyncio.timeout(timeout):
        while len(tasks) < len(requests) or not all(task.done() for task in tasks):
            await asyncio.sleep(0.001)
    for task in tasks:
        task.result()
    return answers


async def facts(request: Request) -> Response:
    """The facts the handler sees."""
    principal = principal_var.get()
    return JSONResponse(
        {
            "request_id": request_id_var.get(),
            "trace_id": trace_id_var.get(),
            "client_ip": client_ip_var.get(),
            "tenant": None if principal is None else principal.tenant,
            "remaining": remaining_time(),
        }
    )


async def public_facts(request: Request) -> Response:
    """:func:`facts`, for routes marked public (the mark is on the function)."""
    return await facts(request)
