"""Requests through uvicorn's HTTP protocol and the app, in this process, without sockets.

``python -m benchmarks._inprocess FACTORY REQUESTS`` builds an app of
``benchmarks._throughput_apps`` (settings from the environment, as the throughput
benchmark gives them), runs its lifespan, and drives ``REQUESTS`` requests for the
benchmark route through uvicorn's ``HttpToolsProtocol`` over in-memory transports: the
same request parsing, ASGI cycle and response header checks as a real server, with the
garbage collector on, ``--connections`` requests in flight. What it leaves out is what
the kernel does (sockets, syscalls), so its cost is the Python a request pays.

The event loop is uvloop where installed, as uvicorn's.

``--gc-json`` prints, instead of the CPU line, one JSON object: CPU seconds per request
and what the garbage collector did during the measured requests (collections and
seconds in them, per generation; :class:`CollectionCount`).

``--handshake DIR`` writes ``DIR/start`` before the measured requests and ``DIR/stop``
after them, each time waiting on a byte from the named pipe of the same name with
``.ack`` appended (which the caller made): the instruction counter
(``benchmarks.instructions``) turns callgrind's instrumentation on and off there.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from uvicorn.config import Config
from uvicorn.lifespan.on import LifespanOn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from benchmarks._throughput import PATH
from benchmarks._throughput_apps import hardenkit_environment, token

__all__ = ["CollectionCount", "drive"]


class _Transport(asyncio.Transport):
    """A connection that keeps what the server writes and says when a response ended."""

    def __init__(self, on_write: Callable[[], None]) -> None:
        super().__init__()
        self.written = bytearray()
        self._on_write = on_write
        self._closing = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        addresses = {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}
        return addresses.get(name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data
        self._on_write()

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        self._closing = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def _complete(written: bytearray) -> bool:
    """Whether ``written`` holds a whole response (the benchmark route sends a length).

    In a few calls into C, none of them over every byte of the head: the instruction
    counter counts this too, and work per header line or per header byte here would
    charge the app's extra headers to the app. (Lowering the whole head, as the first
    version did, cost 12k instructions per response of the full stack.) uvicorn writes
    header names in lower case, so the length's name is found as it is.
    """
    end = written.find(b"\r\n\r\n")
    if end < 0:
        return False
    start = written.find(b"\r\ncontent-length:", 0, end)
    if start < 0:
        return False
    start += len(b"\r\ncontent-length:")
    stop = written.find(b"\r\n", start, end + 2)
    length = int(written[start:stop])
    return len(written) - end - 4 >= length


def header_names(response: bytes) -> list[bytes]:
    """The header names of ``response``'s head, in order (values vary per request)."""
    head = response.split(b"\r\n\r\n", 1)[0]
    return [line.split(b":", 1)[0].lower() for line in head.split(b"\r\n")[1:]]


async def _connection(
    protocol: HttpToolsProtocol,
    request: bytes,
    remaining: list[int],
    failures: list[bytes],
    last: list[bytes],
) -> int:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def on_write() -> None:
        if not done.done() and _complete(transport.written):
            done.set_result(None)

    transport = _Transport(on_write)
    protocol.connection_made(transport)
    served = 0
    while remaining[0] > 0:
        remaining[0] -= 1
        transport.written.clear()
        done = loop.create_future()
        protocol.data_received(request)
        await done
        if not transport.written.startswith(b"HTTP/1.1 200"):
            failures.append(bytes(transport.written[:200]))
        served += 1
    if served:
        last.append(bytes(transport.written))
    protocol.connection_lost(None)
    return served


async def drive(
    factory: str,
    requests: int,
    *,
    connections: int = 32,
    warm_up: int = 300,
    around: Callable[[str], None] | None = None,
) -> float:
    """Serve ``requests`` requests to the app ``factory`` makes; CPU seconds they took.

    After the measured requests (outside the counted part), the last response of every
    connection must carry the header names of the first response: a change that makes
    the app faster by sending less (a header lost) fails the run instead of passing as
    a saving.

    Raises:
        RuntimeError: A response was not ``200``, or the header names changed.
    """
    config = Config(
        f"benchmarks._throughput_apps:{factory}",
        factory=True,
        access_log=False,
        log_level="warning",
        proxy_headers=False,
        lifespan="on",
        http="httptools",
    )
    config.load()
    lifespan = LifespanOn(config)
    await lifespan.startup()
    state = ServerState()
    raw = (
        f"GET {PATH} HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nAuthorization: Bearer {token()}\r\n\r\n"
    ).encode()
    failures: list[bytes] = []

    async def run(count: int) -> list[bytes]:
        remaining = [count]
        last: list[bytes] = []
        protocols = [HttpToolsProtocol(config, state, {}) for _ in range(connections)]
        await asyncio.gather(*(_connection(p, raw, remaining, failures, last) for p in protocols))
        return last

    try:
        first = await run(warm_up)
        if around is not None:
            around("start")
        started = time.process_time()
        measured = await run(requests)
        spent = time.process_time() - started
        if around is not None:
            around("stop")
    finally:
        await lifespan.shutdown()
    if failures:
        raise RuntimeError(f"{len(failures)} responses were not 200, e.g. {failures[0]!r}")
    expected = header_names((first or measured)[0])
    changed = [names for names in map(header_names, measured) if names != expected]
    if changed:
        raise RuntimeError(
            f"the header names changed during the run: {expected!r}, then {changed[0]!r}"
        )
    return spent


class CollectionCount:
    """Counts the collector's runs and the time in them, while switched on.

    ``around`` is :func:`drive`'s hook: counting starts with the measured requests and
    stops with them (the warm-up and the lifespan are not counted).
    """

    def __init__(self) -> None:
        self.counting = False
        self.runs = [0, 0, 0]
        self.seconds = [0.0, 0.0, 0.0]
        self._started = 0.0

    def around(self, step: str) -> None:
        self.counting = step == "start"

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if not self.counting:
            return
        if phase == "start":
            self._started = time.perf_counter()
            return
        generation = info["generation"]
        self.runs[generation] += 1
        self.seconds[generation] += time.perf_counter() - self._started


def _handshake(directory: Path) -> Callable[[str], None]:
    def around(step: str) -> None:
        (directory / step).touch()
        # Blocks in one read until the counter has switched: waiting costs no instruction
        # while it is counting. (A spin here, as the first version had, counted for as
        # long as callgrind_control took: millions of instructions, more on a busy host.)
        with (directory / f"{step}.ack").open("rb", buffering=0) as acknowledged:
            acknowledged.read(1)

    return around


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop where installed, as uvicorn picks it."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        return None
    return uvloop.new_event_loop


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks._inprocess")
    parser.add_argument("factory", help="a factory in benchmarks._throughput_apps")
    parser.add_argument("requests", type=int)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--warm-up", type=int, default=300)
    parser.add_argument("--handshake", type=Path, help="a directory to signal start/stop in")
    parser.add_argument("--gc-json", action="store_true", help="print a JSON report with GC")
    args = parser.parse_args(argv)
    os.environ.update(hardenkit_environment())
    around = _handshake(args.handshake) if args.handshake else None
    collections = CollectionCount()
    if args.gc_json:
        gc.callbacks.append(collections)
        around = collections.around
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        spent = runner.run(
            drive(
                args.factory,
                args.requests,
                connections=args.connections,
                warm_up=args.warm_up,
                around=around,
            )
        )
    if args.gc_json:
        report = {
            "cpu": spent / args.requests,
            "runs": collections.runs,
            "seconds": [seconds / args.requests for seconds in collections.seconds],
        }
        print(json.dumps(report))
        return
    print(f"{args.factory}: {spent / args.requests * 1e6:.1f} µs CPU per request")


if __name__ == "__main__":
    main()
