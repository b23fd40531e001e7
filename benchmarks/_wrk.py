"""The C load generator ``wrk`` (when installed): command line and output parsing.

wrk drives a keep-alive HTTP/1.1 server from one thread per client core at a small
fraction of the server's cost per request, so the server stays the bottleneck. Its own
CPU time is read from the resource usage of the finished child.
"""

from __future__ import annotations

import math
import re
import resource
import shutil
import subprocess
import time
from dataclasses import dataclass

from benchmarks._cpu import CorePlan
from benchmarks._load import LoadResult

__all__ = ["WrkSummary", "parse_wrk", "run_wrk", "wrk_path"]

_TOTAL = re.compile(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h)\b", re.MULTILINE)
_NON_2XX = re.compile(r"^\s*Non-2xx or 3xx responses: (\d+)", re.MULTILINE)
_SOCKET = re.compile(
    r"^\s*Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", re.MULTILINE
)
_UNIT_SECONDS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass(frozen=True, slots=True)
class WrkSummary:
    """What one wrk run reports: completed requests, its own elapsed time, failures."""

    requests: int
    seconds: float
    non_2xx: int
    socket_errors: int


def parse_wrk(output: str) -> WrkSummary:
    """Parse wrk's report; raise ValueError when it has no request total."""
    total = _TOTAL.search(output)
    if total is None:
        raise ValueError(f"wrk printed no request total:\n{output}")
    non_2xx = _NON_2XX.search(output)
    socket = _SOCKET.search(output)
    return WrkSummary(
        requests=int(total.group(1)),
        seconds=float(total.group(2)) * _UNIT_SECONDS[total.group(3)],
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(int(count) for count in socket.groups()) if socket else 0,
    )


def wrk_path() -> str | None:
    """The wrk executable, or None when it is not installed."""
    return shutil.which("wrk")


def run_wrk(
    url: str,
    *,
    headers: dict[str, str],
    connections: int,
    seconds: float,
    cores: CorePlan,
) -> LoadResult:
    """Load ``url`` with wrk, one thread per client core, pinned to those cores."""
    executable = wrk_path()
    if executable is None:
        raise RuntimeError("wrk is not installed")
    threads = max(1, min(len(cores.client), connections))
    command = [
        executable, f"-t{threads}", f"-c{connections}", f"-d{max(1, math.ceil(seconds))}s",
        *(arg for name, value in headers.items() for arg in ("-H", f"{name}: {value}")),
        url,
    ]  # fmt: skip
    taskset = shutil.which("taskset")
    if cores.pinned and taskset:
        command = [taskset, "-c", ",".join(map(str, sorted(cores.client))), *command]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True, check=True, timeout=120)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    summary = parse_wrk(completed.stdout)
    client_cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return LoadResult(
        requests=summary.requests,
        seconds=summary.seconds,
        errors=summary.non_2xx + summary.socket_errors,
        wall_seconds=wall,
        client_cpu_seconds=client_cpu,
        generator="wrk",
    )
