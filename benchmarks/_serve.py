"""Serve one benchmark app under uvicorn: ``python -m benchmarks._serve FACTORY PORT``.

One worker, no access log, uvicorn's default event loop and HTTP parser (uvloop and
httptools when installed), no proxy-header rewriting, the same for every app. Options:
``--cores 0`` pins the process before uvicorn starts (so every thread inherits it);
``--gc-freeze`` moves everything alive after startup (lifespan done, socket bound) into
the permanent generation, the opt-in the benchmark measures.
"""

from __future__ import annotations

import argparse
import gc
import os
import socket

import uvicorn


class _FreezeAfterStartup(uvicorn.Server):
    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        gc.collect()
        gc.freeze()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks._serve")
    parser.add_argument("factory", help="a factory in benchmarks._throughput_apps")
    parser.add_argument("port", type=int)
    parser.add_argument("--cores", default="", help="comma-separated cores to pin to")
    parser.add_argument("--gc-freeze", action="store_true", help="gc.freeze() after startup")
    args = parser.parse_args(argv)
    if args.cores and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {int(core) for core in args.cores.split(",")})
    config = uvicorn.Config(
        f"benchmarks._throughput_apps:{args.factory}",
        factory=True,
        host="127.0.0.1",
        port=args.port,
        access_log=False,
        log_level="warning",
        proxy_headers=False,
    )
    server = _FreezeAfterStartup(config) if args.gc_freeze else uvicorn.Server(config)
    server.run()


if __name__ == "__main__":
    main()
