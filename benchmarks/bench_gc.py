"""What the garbage collector costs a request that waits, and what ``gc.freeze()`` saves.

A request that awaits I/O keeps its objects (scope, messages, each layer's coroutine and
closures) alive across event-loop turns, with 31 others in flight: they survive young
collections, are promoted, and every so often a full collection scans every object the
process holds, startup's included. ``HARDENKIT_GC_FREEZE`` keeps startup's objects out
of those scans. Without waiting, a request ends before the collector runs, so this is
measured on the route that awaits 1 ms.

Each app is served in-process (``benchmarks._inprocess``: uvicorn's protocol, GC on,
32 connections) in a fresh interpreter, the apps interleaved round by round; the
collector's own callbacks time every collection during the measured requests.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from dataclasses import dataclass

from benchmarks._harness import Row, Section
from benchmarks._throughput_apps import server_environment

BARE_IO = "bare Starlette, 1 ms I/O"
OURS_IO = "hardenkit, memory, 1 ms I/O"
OURS_IO_FROZEN = "hardenkit, memory, 1 ms I/O, HARDENKIT_GC_FREEZE"

_APPS: dict[str, tuple[str, dict[str, str]]] = {
    BARE_IO: ("bare_io", {}),
    OURS_IO: ("hardened_io", {}),
    OURS_IO_FROZEN: ("hardened_io", {"HARDENKIT_GC_FREEZE": "true"}),
}
_GENERATIONS = 3


@dataclass(frozen=True, slots=True)
class Run:
    """One app's measured requests: CPU, and collections by generation, per request."""

    cpu: float
    runs: tuple[int, ...]
    seconds: tuple[float, ...]
    requests: int

    @property
    def collecting(self) -> float:
        """Seconds per request spent in collections."""
        return sum(self.seconds)


def measure(factory: str, env: dict[str, str], requests: int) -> Run:
    """Serve ``requests`` requests of ``factory`` in a fresh interpreter."""
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks._inprocess", factory, str(requests), "--gc-json"],
        env={**server_environment(), **env},
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return Run(report["cpu"], tuple(report["runs"]), tuple(report["seconds"]), requests)


def _median_ratio(
    results: dict[str, list[Run]], ours: str, peer: str, figure: str
) -> tuple[float, float, float, tuple[float, float]]:
    pairs = list(zip(results[ours], results[peer], strict=True))
    ratios = [getattr(a, figure) / getattr(b, figure) for a, b in pairs if getattr(b, figure)]
    return (
        statistics.median(getattr(run, figure) for run in results[ours]),
        statistics.median(getattr(run, figure) for run in results[peer]),
        statistics.median(ratios) if ratios else float("inf"),
        (min(ratios), max(ratios)) if ratios else (float("inf"), float("inf")),
    )


def _row(results: dict[str, list[Run]], figure: str, ours: str, peer: str, what: str) -> Row:
    ours_value, peer_value, ratio, spread = _median_ratio(results, ours, peer, what)
    return Row(
        "garbage collection",
        figure,
        ours_value * 1e6,
        peer,
        peer_value * 1e6,
        measured_ratio=ratio,
        spread=spread,
    )


def table(results: dict[str, list[Run]]) -> str:
    """Per app: CPU per request, and collections per 1000 requests and µs, by generation."""
    lines = [
        "| app | CPU µs/request | collections per 1000 requests (gen 0 / 1 / 2) "
        "| µs/request in collections (gen 0 / 1 / 2) | µs/request in collections, all |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, runs in results.items():
        per_thousand = [
            statistics.median(run.runs[gen] * 1000 / run.requests for run in runs)
            for gen in range(_GENERATIONS)
        ]
        seconds = [
            statistics.median(run.seconds[gen] for run in runs) for gen in range(_GENERATIONS)
        ]
        lines.append(
            f"| {name} | {statistics.median(run.cpu for run in runs) * 1e6:.0f} | "
            f"{' / '.join(f'{value:.1f}' for value in per_thousand)} | "
            f"{' / '.join(f'{value * 1e6:.1f}' for value in seconds)} | "
            f"{statistics.median(run.collecting for run in runs) * 1e6:.1f} |"
        )
    return "\n".join(lines)


def run(quick: bool) -> list[Row | Section]:
    rounds, requests = (1, 1000) if quick else (5, 4000)
    results: dict[str, list[Run]] = {name: [] for name in _APPS}
    for _ in range(rounds):
        for name, (factory, env) in _APPS.items():
            results[name].append(measure(factory, env, requests))
    rows: list[Row | Section] = [
        _row(
            results,
            "time in collections per request, handler awaiting 1 ms, 32 in flight (in-process)",
            OURS_IO,
            BARE_IO,
            "collecting",
        ),
        _row(
            results,
            "time in collections per request, the same, HARDENKIT_GC_FREEZE vs without",
            OURS_IO_FROZEN,
            OURS_IO,
            "collecting",
        ),
        _row(
            results,
            "CPU per request, handler awaiting 1 ms, HARDENKIT_GC_FREEZE vs without (in-process)",
            OURS_IO_FROZEN,
            OURS_IO,
            "cpu",
        ),
    ]
    description = (
        f"In-process (uvicorn's protocol, no sockets), 32 connections, GC on, a fresh "
        f"interpreter per app and round; {rounds} interleaved rounds of {requests} "
        "requests, medians over rounds. Collections are timed by the collector's own "
        "callbacks during the measured requests only."
    )
    rows.append(
        Section("gc", "Garbage collection per request", f"{description}\n\n{table(results)}")
    )
    return rows
