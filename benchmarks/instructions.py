"""Instructions per request, counted by callgrind: a cost figure that noise does not move.

``python -m benchmarks.instructions FACTORY [-n 1000] [--layer 3,4] [--redis URL]``

Timings on a shared machine move with what else runs there; the number of instructions
a request executes does not (to about 2%: the garbage collector's work varies). This
runs ``benchmarks._inprocess`` (uvicorn's protocol and the app, in-process, GC on)
under ``valgrind --tool=callgrind`` with instrumentation off, turns it on for the
measured requests only (``callgrind_control``), and prints the instructions each
request took. Python code counts, kernel work does not. ``--layer`` serves the installed
app with only those layers (the ``layer`` factory, ``BENCH_LAYER``). Needs valgrind
(``apt-get install valgrind``); about 15 s per 1000 requests of the full stack.
"""

from __future__ import annotations

import argparse
import errno
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._throughput_apps import server_environment

__all__ = ["count_instructions", "parse_collected"]

_COLLECTED = re.compile(r"Collected\s*:\s*(\d+)")


def parse_collected(log: str) -> int:
    """The instruction count callgrind reports when the program ends."""
    match = _COLLECTED.search(log)
    if match is None:
        raise ValueError(f"callgrind reported no instruction count:\n{log[-2000:]}")
    return int(match.group(1))


def _await_file(path: Path, process: subprocess.Popen[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None:
            raise RuntimeError(f"the measured process exited ({process.returncode})")
        if time.monotonic() > deadline:
            raise RuntimeError(f"no {path.name} from the measured process")
        time.sleep(0.2)


def _acknowledge(pipe: Path, process: subprocess.Popen[str], timeout: float) -> None:
    """Write the byte the measured process blocks on, once it has the pipe open."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            descriptor = os.open(pipe, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as error:  # ENXIO: no reader yet
            if error.errno != errno.ENXIO:
                raise
            if process.poll() is not None:
                raise RuntimeError(f"the measured process exited ({process.returncode})") from None
            if time.monotonic() > deadline:
                raise RuntimeError(f"the measured process never opened {pipe.name}") from None
            time.sleep(0.01)
            continue
        try:
            os.write(descriptor, b"x")
        finally:
            os.close(descriptor)
        return


def count_instructions(
    factory: str, requests: int, *, env: dict[str, str] | None = None, timeout: float = 600
) -> float:
    """Instructions per request of ``requests`` requests to the app ``factory`` makes."""
    valgrind, control = shutil.which("valgrind"), shutil.which("callgrind_control")
    if valgrind is None or control is None:
        raise RuntimeError("valgrind is not installed (apt-get install valgrind)")
    with tempfile.TemporaryDirectory(prefix="hardenkit-instructions-") as directory:
        signals = Path(directory)
        for step in ("start", "stop"):
            os.mkfifo(signals / f"{step}.ack")
        command = [
            valgrind, "--tool=callgrind", "--instr-atstart=no",
            f"--callgrind-out-file={signals / 'callgrind.out'}",
            sys.executable, "-m", "benchmarks._inprocess", factory, str(requests),
            "--handshake", str(signals),
        ]  # fmt: skip
        environment = {**server_environment(), **(env or {})}
        with subprocess.Popen(
            command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        ) as process:
            try:
                for step, switch in (("start", "on"), ("stop", "off")):
                    _await_file(signals / step, process, timeout)
                    subprocess.run(
                        [control, "-i", switch, str(process.pid)], check=True, capture_output=True
                    )
                    _acknowledge(signals / f"{step}.ack", process, timeout)
                log, _ = process.communicate(timeout=timeout)
            finally:
                if process.poll() is None:
                    process.kill()
        if process.returncode != 0:
            raise RuntimeError(f"the measured process failed:\n{log[-2000:]}")
    return parse_collected(log) / requests


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.instructions")
    parser.add_argument("factory", help="bare, hardened, peer, layer... (_throughput_apps)")
    parser.add_argument("-n", "--requests", type=int, default=1000)
    parser.add_argument("--layer", default=None, help="BENCH_LAYER for the layer factory")
    parser.add_argument("--redis", default=None, help="HARDENKIT_REDIS_URL: stores on Redis")
    args = parser.parse_args(argv)
    env = {"BENCH_LAYER": args.layer} if args.layer is not None else {}
    if args.redis is not None:
        env["HARDENKIT_REDIS_URL"] = args.redis
    per_request = count_instructions(args.factory, args.requests, env=env)
    print(f"{args.factory}: {per_request:,.0f} instructions per request")


if __name__ == "__main__":
    main()
