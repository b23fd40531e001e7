"""Drive an ASGI app in-process, recording every message with the time it was sent."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

Message = dict[str, Any]


@dataclass
class Captured:
    """What the app sent: status, headers, body, and each message with its time."""

    started_at: float
    messages: list[tuple[float, Message]] = field(default_factory=list)

    @property
    def start(self) -> Message:
        return next(m for _, m in self.messages if m["type"] == "http.response.start")

    @property
    def status(self) -> int:
        return int(self.start["status"])

    @property
    def raw_headers(self) -> list[tuple[bytes, bytes]]:
        return list(self.start.get("headers", []))

    def values(self, name: str) -> list[str]:
        key = name.lower().encode()
        return [v.decode("latin-1") for k, v in self.raw_headers if k.lower() == key]

    def header(self, name: str) -> str | None:
        values = self.values(name)
        assert len(values) <= 1, f"{name} sent {len(values)} times: {values}"
        return values[0] if values else None

    @property
    def body(self) -> bytes:
        return b"".join(
            m.get("body", b"") for _, m in self.messages if m["type"] == "http.response.body"
        )

    @property
    def complete(self) -> bool:
        bodies = [m for _, m in self.messages if m["type"] == "http.response.body"]
        return bool(bodies) and not bodies[-1].get("more_body", False)

    def seconds_until_start(self) -> float:
        at = next(t for t, m in self.messages if m["type"] == "http.response.start")
        return at - self.started_at

    def body_times(self) -> list[float]:
        return [t - self.started_at for t, m in self.messages if m["type"] == "http.response.body"]


def scope_for(
    path: str = "/",
    *,
    method: str = "GET",
    scheme: str = "http",
    headers: Sequence[tuple[bytes, bytes]] = (),
    client: tuple[str, int] = ("127.0.0.1", 50000),
    query: bytes = b"",
) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": scheme,
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query,
        "headers": [(b"host", b"testserver"), *headers],
        "client": client,
        "server": ("127.0.0.1", 8000),
    }


async def call(
    app: Callable[..., Awaitable[None]],
    path: str = "/",
    *,
    body: bytes = b"",
    **scope_options: Any,
) -> Captured:
    """Call ``app`` once; the client stays connected until the app returns."""
    captured = Captured(started_at=time.monotonic())
    sent_request = False
    stay = asyncio.Event()

    async def receive() -> Message:
        nonlocal sent_request
        if not sent_request:
            sent_request = True
            return {"type": "http.request", "body": body, "more_body": False}
        await stay.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        captured.messages.append((time.monotonic(), message))

    try:
        await app(scope_for(path, **scope_options), receive, send)
    finally:
        stay.set()
    return captured
