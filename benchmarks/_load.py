"""A small HTTP/1.1 keep-alive load client on raw asyncio streams, for loopback only.

httpx costs more per request than the server under test, which would flatten any ratio;
this client parses just enough (status line, Content-Length, chunked not supported) to
drive uvicorn at full speed. Every run is bounded by a duration and a request count.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LoadResult:
    requests: int
    seconds: float
    statuses: Counter[int]

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


async def _connection(
    host: str,
    port: int,
    request: bytes,
    *,
    stop_at: float,
    budget: list[int],
    statuses: Counter[int],
) -> int:
    reader, writer = await asyncio.open_connection(host, port)
    done = 0
    try:
        while budget[0] > 0 and time.perf_counter() < stop_at:
            budget[0] -= 1
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
                    break
            if length:
                await reader.readexactly(length)
            statuses[status] += 1
            done += 1
    finally:
        writer.close()
        await writer.wait_closed()
    return done


def run_load(
    host: str,
    port: int,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    concurrency: int = 32,
    seconds: float = 3.0,
    max_requests: int = 200_000,
) -> LoadResult:
    """Send GET ``path`` from ``concurrency`` keep-alive connections for ``seconds``."""
    if host not in {"127.0.0.1", "localhost", "::1"}:
        raise ValueError("the load client only targets loopback")
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()

    async def main() -> LoadResult:
        statuses: Counter[int] = Counter()
        budget = [max_requests]
        started = time.perf_counter()
        stop_at = started + seconds
        counts = await asyncio.gather(
            *(
                _connection(host, port, request, stop_at=stop_at, budget=budget, statuses=statuses)
                for _ in range(concurrency)
            )
        )
        return LoadResult(sum(counts), time.perf_counter() - started, statuses)

    return asyncio.run(main())
