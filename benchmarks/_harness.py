"""Timing primitives and the result row shared by every benchmark module.

Each ``benchmarks/bench_*.py`` module exposes ``run(quick: bool) -> list[Row | Section]``.
In-process figures are the best (lowest) mean over several repeats, with the subjects of
one comparison interleaved repeat by repeat, so a noisy moment on the machine hits all
of them alike. The garbage collector stays on while they are timed: a server runs with
it, and the objects a layer leaves behind cost collections (``gc.collect()`` runs once
before timing, so every subject starts from the same heap).
"""

from __future__ import annotations

import asyncio
import gc
import random
import statistics
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "AsgiCall",
    "Row",
    "Section",
    "compare_async",
    "compare_async_cpu",
    "compare_async_per_call",
    "compare_sync",
]


@dataclass(frozen=True, slots=True)
class Row:
    """One figure: ours against a peer, with the target it must meet.

    ``ratio`` is ours / peer; the row passes when ``ratio <= max_ratio`` (or, for
    higher-is-better figures such as throughput, ``ratio >= min_ratio``). Figures taken
    over interleaved rounds give the median of the per-round ratios in
    ``measured_ratio`` (ours and peer are then medians of their own) and the lowest and
    highest in ``spread``.
    """

    piece: str
    figure: str
    ours: float
    peer_name: str
    peer: float
    unit: str = "µs"
    max_ratio: float | None = None
    min_ratio: float | None = None
    measured_ratio: float | None = None
    spread: tuple[float, float] | None = None

    @property
    def ratio(self) -> float:
        if self.measured_ratio is not None:
            return self.measured_ratio
        return self.ours / self.peer if self.peer else float("inf")

    @property
    def target(self) -> str:
        if self.max_ratio is not None:
            return f"≤ {self.max_ratio:g}×"
        if self.min_ratio is not None:
            return f"≥ {self.min_ratio:g}×"
        return "reported"

    @property
    def ok(self) -> bool:
        if self.max_ratio is not None:
            return self.ratio <= self.max_ratio
        if self.min_ratio is not None:
            return self.ratio >= self.min_ratio
        return True


@dataclass(frozen=True, slots=True)
class Section:
    """A table of its own printed after the figures (per-stack details, per-layer costs).

    ``name`` marks it in the report for the docs to include (pymdownx snippet sections:
    ``--8<-- "benchmarks/RESULTS.md:name"``).
    """

    name: str
    title: str
    markdown: str


def _measure_sync(fn: Callable[[], object], number: int) -> float:
    start = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - start) / number


async def _measure_async(fn: Callable[[], Awaitable[object]], number: int) -> float:
    start = time.perf_counter()
    for _ in range(number):
        await fn()
    return (time.perf_counter() - start) / number


def compare_sync(
    subjects: Mapping[str, Callable[[], object]], *, number: int, repeat: int
) -> dict[str, float]:
    """Return the best mean seconds per call of each subject, interleaved."""
    best = dict.fromkeys(subjects, float("inf"))
    for fn in subjects.values():  # warm up caches and lazy imports
        _measure_sync(fn, max(1, number // 10))
    gc.collect()
    for _ in range(repeat):
        for name, fn in subjects.items():
            best[name] = min(best[name], _measure_sync(fn, number))
    return best


def compare_async(
    subjects: Mapping[str, Callable[[], Awaitable[object]]], *, number: int, repeat: int
) -> dict[str, float]:
    """Return the best mean seconds per await of each subject, interleaved, in one loop."""

    async def main() -> dict[str, float]:
        best = dict.fromkeys(subjects, float("inf"))
        for fn in subjects.values():
            await _measure_async(fn, max(1, number // 10))
        gc.collect()
        for _ in range(repeat):
            for name, fn in subjects.items():
                best[name] = min(best[name], await _measure_async(fn, number))
        return best

    return asyncio.run(main())


def compare_async_per_call(
    subjects: Mapping[str, Callable[[], Awaitable[object]]], *, rounds: int
) -> dict[str, float]:
    """Return the median seconds of one await of each subject, timed call by call.

    For round trips to a server, where the machine's speed drifts by tens of percent
    from second to second (a VM's CPU, its wakeups): each round calls every subject once,
    in a shuffled order, so every subject sees the same moments of the machine, and the
    median ignores the rare stall. Best-of-block means, as :func:`compare_async` takes,
    let each subject keep whichever fast moment it happened to meet.
    """

    return _interleaved(subjects, rounds=rounds, block=1, clock=time.perf_counter)


def compare_async_cpu(
    subjects: Mapping[str, Callable[[], Awaitable[object]]], *, number: int, rounds: int
) -> dict[str, float]:
    """Return the median CPU seconds this process spends per await of each subject.

    What a server pays for a call, as opposed to how long its caller waits: a call to
    another process is mostly waiting, and how long a wait takes depends on when the
    machine wakes each side (a VM's idle cores wake slowly), which a lean client meets
    more often than a busy one. Each round times ``number`` calls of every subject in a
    block, in a shuffled order; the median of the rounds per subject.
    """

    return _interleaved(subjects, rounds=rounds, block=number, clock=time.process_time)


def _interleaved(
    subjects: Mapping[str, Callable[[], Awaitable[object]]],
    *,
    rounds: int,
    block: int,
    clock: Callable[[], float],
) -> dict[str, float]:
    """Median per-await ``clock`` seconds of each subject over ``rounds`` shuffled rounds.

    Each round times ``block`` awaits of every subject in a row, subjects in a shuffled
    order (the same seed every run), after a warm-up of a tenth as many rounds.
    """

    async def main() -> dict[str, float]:
        order = list(subjects.items())
        for _ in range(max(1, rounds // 10)):
            for _, fn in order:
                await fn()
        samples: dict[str, list[float]] = {name: [] for name in subjects}
        shuffle = random.Random(0).shuffle
        gc.collect()
        for _ in range(rounds):
            shuffle(order)
            for name, fn in order:
                started = clock()
                for _ in range(block):
                    await fn()
                samples[name].append((clock() - started) / block)
        return {name: statistics.median(times) for name, times in samples.items()}

    return asyncio.run(main())


class AsgiCall:
    """Calls an ASGI app in-process with a fixed HTTP request, discarding the response."""

    def __init__(
        self,
        app: Callable[..., Awaitable[None]],
        *,
        path: str = "/",
        method: str = "GET",
        headers: list[tuple[bytes, bytes]] | None = None,
        scheme: str = "http",
    ) -> None:
        self.app = app
        self.scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": scheme,
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": b"",
            "headers": headers or [],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
        }
        self.status = 0

    async def _receive(self) -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def _send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]

    async def __call__(self) -> None:
        # A fresh scope per call: middleware may add keys to it.
        await self.app(dict(self.scope), self._receive, self._send)
