"""Three stacks side by side under uvicorn, on the same route with the same token.

* bare Starlette (the ceiling);
* the peer stack a FastAPI user assembles (``_peer_stack.py``), slowapi on memory and
  on Redis (slowapi's Redis client is synchronous: that server waits on every round trip,
  so its CPU share is shown, not held to the target);
* hardenkit's full stack (``install()``), memory stores and Redis;
* hardenkit and bare with a handler awaiting 1 ms of I/O, at 8 connections: with 32 the
  bare app is CPU-bound even while every request waits 1 ms (32 / 1 ms is more than it
  serves), so the row would repeat the first ratio instead of showing a waiting route;
* hardenkit and bare with ``gc.freeze()`` after startup (the opt-in, measured), with
  and without the 1 ms of I/O: a request that waits keeps its objects alive across
  collections, which is where freezing pays (``bench_gc`` shows the collections).

The Redis variants use a redis-server this benchmark starts on a private port (pinned
with the load generator, off the server's core). Targets are ratios within each round.
"""

from __future__ import annotations

import os
import statistics
import tempfile
from pathlib import Path

from benchmarks._cpu import plan_cores
from benchmarks._harness import Row, Section
from benchmarks._throughput import (
    SATURATED_SHARE,
    Measurement,
    Variant,
    load_generator_name,
    lowest_share_run,
    measure_rounds,
    median_range,
)
from benchmarks._throughput_apps import server_environment, token
from tests.support.redis_server import RedisServer

BARE = "bare Starlette"
PEER = "peer stack, memory"
PEER_REDIS = "peer stack, Redis"
OURS = "hardenkit, memory"
OURS_REDIS = "hardenkit, Redis"
BARE_IO = "bare Starlette, 1 ms I/O"
OURS_IO = "hardenkit, memory, 1 ms I/O"
BARE_FROZEN = "bare Starlette, gc.freeze()"
OURS_FROZEN = "hardenkit, memory, gc.freeze()"
BARE_IO_FROZEN = "bare Starlette, 1 ms I/O, gc.freeze()"
OURS_IO_FROZEN = "hardenkit, memory, 1 ms I/O, gc.freeze()"
IO_CONNECTIONS = 8

# (figure, ours, peer, min_ratio or None for reported)
_RATIOS: list[tuple[str, str, str, float | None]] = [
    ("full stack vs bare, memory stores", OURS, BARE, 0.55),
    ("full stack vs peer stack, memory stores", OURS, PEER, 3.0),
    ("full stack vs bare, Redis", OURS_REDIS, BARE, 0.45),
    ("full stack vs peer stack, both on Redis", OURS_REDIS, PEER_REDIS, 2.5),
    (f"handler awaiting 1 ms of I/O, {IO_CONNECTIONS} connections", OURS_IO, BARE_IO, 0.9),
    ("peer stack vs bare, memory (for scale)", PEER, BARE, None),
    ("gc.freeze() after startup vs bare", OURS_FROZEN, BARE, None),
    ("gc.freeze() after startup vs bare with gc.freeze()", OURS_FROZEN, BARE_FROZEN, None),
    ("gc.freeze() after startup vs without", OURS_FROZEN, OURS, None),
    ("1 ms of I/O, gc.freeze() after startup vs bare", OURS_IO_FROZEN, BARE_IO, None),
    (
        "1 ms of I/O, gc.freeze() after startup vs bare with gc.freeze()",
        OURS_IO_FROZEN,
        BARE_IO_FROZEN,
        None,
    ),
    ("1 ms of I/O, gc.freeze() after startup vs without", OURS_IO_FROZEN, OURS_IO, None),
]


def _variants(redis_url: str) -> list[Variant]:
    ours_redis = {"HARDENKIT_REDIS_URL": redis_url}
    return [
        Variant(BARE, "bare"),
        Variant(PEER, "peer", {"BENCH_PEER_STORAGE": "memory://"}),
        # slowapi checks limits with the synchronous Redis client: the event loop waits for
        # every round trip, so this server idles by design and is not held to the share.
        Variant(
            PEER_REDIS,
            "peer",
            {"BENCH_PEER_STORAGE": redis_url},
            saturates=False,
            may_fail=True,  # a few of its requests outwait wrk's 2 s timeout
        ),
        Variant(OURS, "hardened"),
        Variant(OURS_REDIS, "hardened", ours_redis),
        Variant(BARE_IO, "bare_io", connections=IO_CONNECTIONS, saturates=False),
        Variant(OURS_IO, "hardened_io", connections=IO_CONNECTIONS, saturates=False),
        Variant(BARE_FROZEN, "bare", gc_freeze=True),
        # The shipped opt-in (HARDENKIT_GC_FREEZE, applied in install()'s lifespan).
        Variant(OURS_FROZEN, "hardened", {"HARDENKIT_GC_FREEZE": "true"}),
        Variant(
            BARE_IO_FROZEN,
            "bare_io",
            connections=IO_CONNECTIONS,
            saturates=False,
            gc_freeze=True,
        ),
        Variant(
            OURS_IO_FROZEN,
            "hardened_io",
            {"HARDENKIT_GC_FREEZE": "true"},
            connections=IO_CONNECTIONS,
            saturates=False,
        ),
    ]


def _percent(value: float | None) -> str:
    return f"{value:.0%}" if value is not None else "unknown"


def _median(values: list[float | None], form: str) -> str:
    known = [value for value in values if value is not None]
    return format(statistics.median(known), form) if known else "unknown"


def _per_cpu_second(run: Measurement) -> float | None:
    # What one core would serve if the server had it to itself: a figure that holds on
    # a busy machine, where req/s measures the share of the core the server was given.
    return 1e6 / run.server_cpu_us if run.server_cpu_us else None


def core_columns(run: Measurement | None) -> str:
    """Where the server's core went in ``run``: other processes, steal, idle, interrupts."""
    split = run.server_core if run is not None else None
    if split is None:
        return "unknown | unknown | unknown | unknown"
    return f"{split.other:.0%} | {split.steal:.0%} | {split.idle:.0%} | {split.interrupts:.0%}"


def stack_table(variants: list[Variant], results: dict[str, list[Measurement]]) -> str:
    """One line per app: throughput, the server's CPU and its core, the load generator."""
    lines = [
        "| app | conns | req/s (median) | range | server CPU share (lowest) "
        "| that run, server core: other processes | steal | idle "
        "| irq + softirq (inside the shares) | server CPU µs/request "
        "| req/s per CPU second | load generator cores busy | failed requests |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for variant in variants:
        runs = results[variant.name]
        median, low, high = median_range([run.per_second for run in runs])
        lowest = lowest_share_run(runs)
        note = "" if variant.saturates else " (waits: not held to it)"
        lines.append(
            f"| {variant.name} | {variant.connections} | {median:,.0f} | "
            f"{low:,.0f}–{high:,.0f} | "
            f"{_percent(lowest.server_share if lowest else None)}{note} | "
            f"{core_columns(lowest)} | "
            f"{_median([run.server_cpu_us for run in runs], '.0f')} | "
            f"{_median([_per_cpu_second(run) for run in runs], ',.0f')} | "
            f"{_median([run.client_cores for run in runs], '.2f')} | "
            f"{sum(run.failed for run in runs)} |"
        )
    return "\n".join(lines)


def ratio_rows(results: dict[str, list[Measurement]]) -> list[Row]:
    """The target rows: each ratio taken within a round, median and range over rounds."""
    rows = []
    for figure, ours, peer, min_ratio in _RATIOS:
        ratios = [
            mine.per_second / theirs.per_second
            for mine, theirs in zip(results[ours], results[peer], strict=True)
        ]
        median, low, high = median_range(ratios)
        rows.append(
            Row(
                piece="throughput",
                figure=f"req/s under uvicorn, {figure}",
                ours=statistics.median([run.per_second for run in results[ours]]),
                peer_name=peer,
                peer=statistics.median([run.per_second for run in results[peer]]),
                unit="req/s",
                min_ratio=min_ratio,
                measured_ratio=median,
                spread=(low, high),
            )
        )
    return rows


def saturation_row(variants: list[Variant], results: dict[str, list[Measurement]]) -> Row:
    """The check that the load generator was not the bottleneck: the server's core busy."""
    shares = [
        run.server_share
        for variant in variants
        if variant.saturates
        for run in results[variant.name]
    ]
    lowest = 0.0 if None in shares else min(s for s in shares if s is not None)
    return Row(
        piece="throughput",
        figure="server CPU share, lowest run of a CPU-bound app (load generator not the limit)",
        ours=lowest * 100,
        peer_name="server core always busy",
        peer=100.0,
        unit="%",
        min_ratio=SATURATED_SHARE,
    )


def run(quick: bool) -> list[Row | Section]:
    rounds, seconds = (3, 2.0) if quick else (5, 4.0)
    cores = plan_cores()
    headers = {"Authorization": f"Bearer {token()}"}
    with tempfile.TemporaryDirectory(prefix="hardenkit-bench-") as directory:
        redis = RedisServer(Path(directory))
        redis.start()
        try:
            if cores.pinned and redis.process is not None:
                os.sched_setaffinity(redis.process.pid, cores.client)
            variants = _variants(redis.url)
            results = measure_rounds(
                variants,
                headers=headers,
                base_env=server_environment(),
                rounds=rounds,
                seconds=seconds,
                cores=cores,
            )
        finally:
            redis.stop()
    description = (
        f"Load generator: {load_generator_name()}; {cores.describe()}; Redis, the servers "
        "waiting for their turn and the harness on the load generator's cores. "
        f"{rounds} interleaved rounds of {seconds:g} s per app; ratios are medians of "
        "per-round ratios (range in parentheses). For the run where the server had the "
        "least of its core, the columns after its share say where the rest went: other "
        "processes of this machine, steal (the hypervisor did not run the virtual core), "
        "idle (the server waited); irq + softirq is the interrupt work on that core, "
        "which the kernel charges to the process it interrupted (the server's own "
        "loopback traffic is inside its share)."
    )
    return [
        *ratio_rows(results),
        saturation_row(variants, results),
        Section(
            "throughput", "Throughput per app", f"{description}\n\n{stack_table(variants, results)}"
        ),
    ]
