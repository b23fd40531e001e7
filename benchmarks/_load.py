"""The Python load generator, for machines without wrk (CI): keep-alive HTTP/1.1 clients.

Each connection is an ``asyncio.Protocol`` (no stream objects, no task per request) that
writes the next request as soon as the previous response is complete, on uvloop when it
is installed; several such processes, pinned to the client cores, share the connections.
It parses just enough of a response (status line, ``Content-Length``) for loopback runs
against the benchmark's own apps. Every run is bounded by a duration.
"""

from __future__ import annotations

import asyncio
import functools
import multiprocessing
import os
import time
from dataclasses import dataclass
from typing import cast

from benchmarks._cpu import CorePlan

__all__ = ["LoadResult", "PythonLoadGenerator", "parse_response", "run_load"]

_HEAD_END = b"\r\n\r\n"


@dataclass(frozen=True, slots=True)
class LoadResult:
    """One load run: completed requests over ``seconds``, and what the client used."""

    requests: int
    seconds: float
    errors: int  # responses that were not 2xx, and failed connections
    wall_seconds: float  # the whole run, start-up included: the server's CPU window
    client_cpu_seconds: float | None
    generator: str

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def parse_response(buffer: bytes | bytearray) -> tuple[int, int] | None:
    """Return (status, bytes used) of the first complete response in ``buffer``, or None.

    Raises:
        ValueError: The response has no ``Content-Length`` (chunked bodies are not
            supported: the benchmark's apps never send them).
    """
    head_end = buffer.find(_HEAD_END)
    if head_end < 0:
        return None
    head = bytes(buffer[:head_end])
    status = int(head[9:12])
    length: int | None = None
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
            break
    if length is None:
        if status in {204, 304}:
            length = 0
        else:
            raise ValueError(f"response {status} has no Content-Length")
    end = head_end + len(_HEAD_END) + length
    return (status, end) if len(buffer) >= end else None


class _Connection(asyncio.Protocol):
    def __init__(self, request: bytes, stop_at: float, done: asyncio.Future[None]) -> None:
        self.request = request
        self.stop_at = stop_at
        self.done = done
        self.buffer = bytearray()
        self.completed = 0
        self.errors = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses; they behave as one.
        self.transport = cast("asyncio.Transport", transport)
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (parsed := parse_response(self.buffer)) is not None:
            status, used = parsed
            del self.buffer[:used]
            self.completed += 1
            if not 200 <= status < 300:
                self.errors += 1
            assert self.transport is not None
            if time.perf_counter() >= self.stop_at:
                self.transport.close()
                return
            self.transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None:
            self.errors += 1
        if not self.done.done():
            self.done.set_result(None)


def run_load(
    host: str,
    port: int,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    concurrency: int = 32,
    seconds: float = 3.0,
) -> LoadResult:
    """Send GET ``path`` from ``concurrency`` keep-alive connections for ``seconds``."""
    if host not in {"127.0.0.1", "localhost", "::1"}:
        raise ValueError("the load client only targets loopback")
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()

    async def main() -> LoadResult:
        loop = asyncio.get_running_loop()
        cpu_before = time.process_time()
        started = time.perf_counter()
        stop_at = started + seconds
        connections: list[_Connection] = []
        waits: list[asyncio.Future[None]] = []
        for _ in range(concurrency):
            done: asyncio.Future[None] = loop.create_future()
            _, protocol = await loop.create_connection(
                functools.partial(_Connection, request, stop_at, done), host, port
            )
            connections.append(protocol)
            waits.append(done)
        await asyncio.wait_for(asyncio.gather(*waits), timeout=seconds + 30)
        elapsed = time.perf_counter() - started
        return LoadResult(
            requests=sum(connection.completed for connection in connections),
            seconds=elapsed,
            errors=sum(connection.errors for connection in connections),
            wall_seconds=elapsed,
            client_cpu_seconds=time.process_time() - cpu_before,
            generator="python",
        )

    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        return asyncio.run(main())
    return uvloop.run(main())


def _pin(cores: frozenset[int]) -> None:
    if cores and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cores)


def _worker(args: tuple[str, int, str, dict[str, str], int, float]) -> LoadResult:
    host, port, path, headers, concurrency, seconds = args
    return run_load(host, port, path, headers=headers, concurrency=concurrency, seconds=seconds)


class PythonLoadGenerator:
    """Several Python client processes, started once and pinned to the client cores.

    The processes outlive each run, so a run's wall time is the load itself, not the
    start of interpreters: that wall time is the window the server's CPU share covers.
    """

    def __init__(self, cores: CorePlan, processes: int) -> None:
        self.processes = max(1, processes)
        client_cores = cores.client if cores.pinned else frozenset()
        context = multiprocessing.get_context("spawn")
        self._pool = context.Pool(self.processes, initializer=_pin, initargs=(client_cores,))

    def run(
        self,
        host: str,
        port: int,
        path: str,
        *,
        headers: dict[str, str],
        connections: int,
        seconds: float,
    ) -> LoadResult:
        """Share ``connections`` among the processes and load ``path`` for ``seconds``."""
        processes = min(self.processes, connections)
        shares = [
            connections // processes + (index < connections % processes)
            for index in range(processes)
        ]
        jobs = [(host, port, path, headers, share, seconds) for share in shares]
        started = time.perf_counter()
        results = self._pool.map(_worker, jobs, chunksize=1)
        wall = time.perf_counter() - started
        cpu = [result.client_cpu_seconds for result in results]
        return LoadResult(
            requests=sum(result.requests for result in results),
            seconds=max(result.seconds for result in results),
            errors=sum(result.errors for result in results),
            wall_seconds=wall,
            client_cpu_seconds=sum(c for c in cpu if c is not None) if None not in cpu else None,
            generator=f"Python client, {processes} processes",
        )

    def close(self) -> None:
        self._pool.close()
        self._pool.join()
