"""Requests per second under uvicorn, measured so that the server is the bottleneck.

Every app runs in its own uvicorn process; the load generator (wrk when installed, else
several Python client processes) runs on the other cores. All servers are up at once and
the rounds are interleaved (each round loads every app once, in a rotated order), so a
noisy moment of the machine hits every app alike; a ratio is taken within each round and
reported as the median with its range. Only the server being loaded is on the server
core: the others wait on the load generator's cores (an idle uvicorn still wakes ten
times a second, and a dozen of them took 5-10% of the server's core), and so does this
harness. Every run records the server's CPU share (its core busy = the server was the
bottleneck), where the rest of its core went, and what the load generator used.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

from benchmarks._cpu import (
    CorePlan,
    CoreSplit,
    core_busy,
    core_times,
    cpu_seconds,
    cpu_share,
    keep_off_server_core,
    pin_process,
    plan_cores,
    split_core,
)
from benchmarks._load import LoadResult, PythonLoadGenerator
from benchmarks._wrk import run_wrk, wrk_path
from tests.support.redis_server import free_port

__all__ = [
    "Measurement",
    "Variant",
    "load_generator_name",
    "lowest_share_run",
    "measure_rounds",
    "median_range",
]

PATH = "/api/me"
SATURATED_SHARE = 0.95  # the server's core busy at least this much: the server is the limit


@dataclass(frozen=True, slots=True)
class Variant:
    """One app to load: a factory of ``_throughput_apps`` and how to serve and load it."""

    name: str
    factory: str
    env: dict[str, str] = field(default_factory=dict)
    gc_freeze: bool = False
    connections: int = 32
    # False where the app is meant to wait (1 ms of I/O at few connections, a synchronous
    # Redis client): its CPU share is reported, not held to SATURATED_SHARE.
    saturates: bool = True
    # True for a peer whose failures are its own to report (slowapi's synchronous Redis
    # client makes some requests outwait the load generator's timeout): counted in the
    # table, not a reason to stop the run. A failure of hardenkit or bare always is.
    may_fail: bool = False


@dataclass(frozen=True, slots=True)
class Measurement:
    """One load run against one app."""

    per_second: float
    server_share: float | None  # share of one core the server used during the run
    server_core_busy: float | None  # share of the server's core any process used
    server_core: CoreSplit | None  # where the server's core went: others, steal, idle
    server_cpu_us: float | None  # server CPU time per request, in microseconds
    client_cores: float | None  # cores the load generator kept busy during the run
    failed: int = 0  # requests that failed (only where the variant ``may_fail``)


def median_range(values: Sequence[float]) -> tuple[float, float, float]:
    """The median, lowest and highest of ``values``."""
    return statistics.median(values), min(values), max(values)


def lowest_share_run(runs: list[Measurement]) -> Measurement | None:
    """The run whose server had the least of its core (None when a share is unknown)."""
    if any(run.server_share is None for run in runs) or not runs:
        return None
    return min(runs, key=lambda run: run.server_share or 0.0)


def load_generator_name() -> str:
    """``wrk`` when it is installed and not refused by ``BENCH_LOAD=python``."""
    choice = os.environ.get("BENCH_LOAD", "auto")
    if choice == "python" or (choice == "auto" and wrk_path() is None):
        return "python"
    if wrk_path() is None:
        raise RuntimeError("BENCH_LOAD=wrk but wrk is not installed (apt-get install wrk)")
    return "wrk"


class _Server:
    def __init__(self, variant: Variant, cores: CorePlan, base_env: dict[str, str]) -> None:
        self.variant = variant
        self.port = free_port()
        command = [sys.executable, "-m", "benchmarks._serve", variant.factory, str(self.port)]
        if cores.pinned:
            # Waiting for its turn off the server core; _measure moves it there to load it.
            command += ["--cores", ",".join(map(str, sorted(cores.client)))]
        if variant.gc_freeze:
            command.append("--gc-freeze")
        self.process = subprocess.Popen(command, env={**base_env, **variant.env})

    def wait_ready(self, headers: dict[str, str], timeout: float = 60.0) -> None:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{PATH}", headers=headers)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.variant.name}: server exited")
            try:
                with urllib.request.urlopen(request, timeout=2) as response:
                    if response.status == 200:
                        return
            except urllib.error.HTTPError as error:
                raise RuntimeError(f"{self.variant.name} answered {error.code}") from error
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"{self.variant.name} did not start")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=15)


class _Load:
    def __init__(self, cores: CorePlan, stack: ExitStack) -> None:
        self.cores = cores
        self.kind = load_generator_name()
        self.python: PythonLoadGenerator | None = None
        if self.kind == "python":
            python = PythonLoadGenerator(cores, processes=max(2, len(cores.client)))
            stack.callback(python.close)
            self.python = python

    def run(
        self, port: int, headers: dict[str, str], connections: int, seconds: float
    ) -> LoadResult:
        if self.python is not None:
            return self.python.run(
                "127.0.0.1", port, PATH, headers=headers, connections=connections, seconds=seconds
            )
        return run_wrk(
            f"http://127.0.0.1:{port}{PATH}",
            headers=headers,
            connections=connections,
            seconds=seconds,
            cores=self.cores,
        )


def _measure(load: _Load, server: _Server, headers: dict[str, str], seconds: float) -> Measurement:
    core = min(load.cores.server) if load.cores.pinned else None
    if core is not None:
        pin_process(server.process.pid, load.cores.server)
    try:
        started = time.perf_counter()
        core_before = core_times(core) if core is not None else None
        before = cpu_seconds(server.process.pid)
        result = load.run(server.port, headers, server.variant.connections, seconds)
        after = cpu_seconds(server.process.pid)
        core_after = core_times(core) if core is not None else None
        window = time.perf_counter() - started
    finally:
        if core is not None:
            pin_process(server.process.pid, load.cores.client)
    if not result.requests or (result.errors and not server.variant.may_fail):
        raise RuntimeError(
            f"{server.variant.name}: {result.errors} failed of {result.requests} requests"
        )
    client = result.client_cpu_seconds
    # Over the window the core was read in: the server, the others, idle and steal
    # then add up to the whole of it.
    share = cpu_share(before, after, window)
    return Measurement(
        per_second=result.per_second,
        server_share=share,
        server_core_busy=core_busy(core_before, core_after),
        server_core=split_core(core_before, core_after, share, window),
        server_cpu_us=(after - before) / result.requests * 1e6
        if before is not None and after is not None
        else None,
        client_cores=client / result.wall_seconds if client is not None else None,
        failed=result.errors,
    )


@contextmanager
def _servers(
    variants: Sequence[Variant], cores: CorePlan, base_env: dict[str, str]
) -> Iterator[list[_Server]]:
    servers: list[_Server] = []
    try:
        # One at a time into the list: the ones started before a failure are stopped.
        servers.extend(_Server(variant, cores, base_env) for variant in variants)
        yield servers
    finally:
        for server in servers:
            server.stop()


def measure_rounds(
    variants: Sequence[Variant],
    *,
    headers: dict[str, str],
    base_env: dict[str, str],
    rounds: int,
    seconds: float,
    cores: CorePlan | None = None,
) -> dict[str, list[Measurement]]:
    """Load every variant once per round, rounds interleaved; every run's measurement."""
    cores = cores or plan_cores()
    results: dict[str, list[Measurement]] = {variant.name: [] for variant in variants}
    with ExitStack() as stack:
        keep_off_server_core(cores, stack)  # this process too, while it loads
        load = _Load(cores, stack)
        servers = stack.enter_context(_servers(variants, cores, base_env))
        for server in servers:
            server.wait_ready(headers)
        for server in servers:  # warm up: imports, caches, first-request work
            _measure(load, server, headers, 1.0)
        for round_number in range(rounds):
            shift = round_number % len(servers)
            for server in servers[shift:] + servers[:shift]:
                results[server.variant.name].append(_measure(load, server, headers, seconds))
    return results
