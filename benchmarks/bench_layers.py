"""What each layer of the installed stack costs a real server: add one layer, under uvicorn.

Bare Starlette, the full ``install()`` stack, the installed app with no layer at all
(what ``install()`` adds besides middleware: health routes matched first, handlers), and,
for every layer ``install()`` adds, that app with that layer alone (the layers that act
on a verified principal, such as the per-tenant limit, come with the auth layer, whose
own cost is then subtracted).
Every app runs under uvicorn with the garbage collector on, loaded like the throughput
benchmark (pinned cores, interleaved rounds). A layer's cost is the server CPU time per
request above the app it is added to (robust when other work shares the machine), with
the throughput-derived figure next to it (1/req/s above the same app; equal when the
server is the bottleneck). Shares are of the full stack's gap over bare Starlette; what
the layers alone do not add up to is the cost of running them together (more live
objects per request for the collector, deeper call chains). Where valgrind is installed,
each app's instructions per request (callgrind, uvicorn's protocol in-process, GC on:
:mod:`benchmarks.instructions`) stand next to the timings: a figure other work on the
machine does not move. Reported, no target: docs/architecture.md includes this table.
"""

from __future__ import annotations

import os
import shutil
import statistics
from collections.abc import Callable
from unittest import mock

from benchmarks._cpu import plan_cores
from benchmarks._harness import Row, Section
from benchmarks._throughput import (
    Measurement,
    Variant,
    load_generator_name,
    lowest_share_run,
    measure_rounds,
)
from benchmarks._throughput_apps import installed_layers, server_environment, token
from benchmarks.instructions import count_instructions

BARE = "bare Starlette"
FULL = "full stack (install)"
NO_LAYER = "0. install() without its layers (health routes, handlers)"
HEADERS = "bare Starlette sending the full stack's response headers, no other work"
_AUTH = "AuthMiddleware"


def _label(cls_name: str, kwargs: dict[str, object]) -> str:
    rules = kwargs.get("rules")
    if isinstance(rules, list) and rules:
        return f"{cls_name} ({', '.join(str(getattr(rule, 'name', '?')) for rule in rules)})"
    return cls_name


def layer_variants() -> tuple[list[Variant], list[tuple[str, str, str]]]:
    """The apps to load, and per layer: (label, its variant, the variant it is added to)."""
    with mock.patch.dict(os.environ, server_environment(), clear=True):
        layers = installed_layers()
    names = [getattr(layer.cls, "__name__", repr(layer.cls)) for layer in layers]
    auth = names.index(_AUTH) if _AUTH in names else None
    variants = [
        Variant(BARE, "bare"),
        Variant(FULL, "hardened"),
        Variant(NO_LAYER, "layer", {"BENCH_LAYER": ""}),
        Variant(HEADERS, "bare_headers"),
    ]
    # Each layer is added to the installed app without layers, so what install() adds
    # besides middleware (routes matched before the app's, handlers) is counted once.
    costs: list[tuple[str, str, str]] = [(NO_LAYER, NO_LAYER, BARE)]
    for index, layer in enumerate(layers):
        label = f"{index + 1}. {_label(names[index], layer.kwargs)}"
        if auth is not None and index > auth:
            # Without a verified principal this layer has nothing to count.
            name = f"{label}, with auth"
            variants.append(Variant(name, "layer", {"BENCH_LAYER": f"{auth},{index}"}))
            costs.append((label, name, f"{auth + 1}. {names[auth]}"))
        else:
            variants.append(Variant(label, "layer", {"BENCH_LAYER": str(index)}))
            costs.append((label, label, NO_LAYER))
    return variants, costs


def _cpu_us(run: Measurement) -> float:
    return run.server_cpu_us if run.server_cpu_us is not None else 1e6 / run.per_second


def _throughput_us(run: Measurement) -> float:
    return 1e6 / run.per_second


def _above(
    results: dict[str, list[Measurement]],
    name: str,
    base: str,
    figure: Callable[[Measurement], float],
) -> float:
    """Median over rounds of what ``name`` costs per request above ``base``."""
    return statistics.median(
        figure(mine) - figure(theirs)
        for mine, theirs in zip(results[name], results[base], strict=True)
    )


def instruction_counts(variants: list[Variant], requests: int) -> dict[str, float] | None:
    """Instructions per request of every variant, or None without valgrind."""
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        return None
    return {
        variant.name: count_instructions(variant.factory, requests, env=variant.env)
        for variant in variants
    }


def _thousands(count: float) -> str:
    return f"{count / 1000:,.0f}k"


def layer_table(
    results: dict[str, list[Measurement]],
    costs: list[tuple[str, str, str]],
    instructions: dict[str, float] | None = None,
) -> str:
    """The add-one-layer table: µs per request above bare and share of the full gap."""
    gap = _above(results, FULL, BARE, _cpu_us)
    gap_throughput = _above(results, FULL, BARE, _throughput_us)
    counted = instructions or {}

    def above(name: str, base: str) -> str:
        if name not in counted or base not in counted:
            return ""
        return _thousands(counted[name] - counted[base])

    lines = [
        "| layer (install order) | server CPU µs/request | share of the gap "
        "| µs/request from req/s | instructions/request |",
        "|---|---:|---:|---:|---:|",
    ]
    total = 0.0
    total_counted = 0.0
    for label, name, base in costs:
        cost = _above(results, name, base, _cpu_us)
        total += cost
        if name in counted and base in counted:
            total_counted += counted[name] - counted[base]
        throughput = _above(results, name, base, _throughput_us)
        lines.append(
            f"| {label} | {cost:.1f} | {cost / gap:.0%} | {throughput:.1f} | {above(name, base)} |"
        )
    gap_counted = above(FULL, BARE)
    lines += [
        f"| sum of the layers alone | {total:.1f} | {total / gap:.0%} | "
        f"| {_thousands(total_counted) if counted else ''} |",
        f"| full stack above bare (the gap) | {gap:.1f} | 100% | {gap_throughput:.1f} "
        f"| {gap_counted} |",
        f"| not in any layer alone (running them together) | {gap - total:.1f} "
        f"| {(gap - total) / gap:.0%} | "
        f"| {_thousands(counted[FULL] - counted[BARE] - total_counted) if gap_counted else ''} |",
        f"| bare Starlette itself | "
        f"{statistics.median(_cpu_us(run) for run in results[BARE]):.1f} | | "
        f"{statistics.median(_throughput_us(run) for run in results[BARE]):.1f} "
        f"| {_thousands(counted[BARE]) if BARE in counted else ''} |",
    ]
    if HEADERS in results:  # a reference, in no sum: the floor under any such stack
        floor = _above(results, HEADERS, BARE, _cpu_us)
        lines.append(
            f"| {HEADERS} (above bare) | {floor:.1f} | {floor / gap:.0%} "
            f"| {_above(results, HEADERS, BARE, _throughput_us):.1f} "
            f"| {above(HEADERS, BARE)} |"
        )
    return "\n".join(lines)


def run(quick: bool) -> list[Row | Section]:
    rounds, seconds = (2, 2.0) if quick else (5, 2.0)
    cores = plan_cores()
    variants, costs = layer_variants()
    results = measure_rounds(
        variants,
        headers={"Authorization": f"Bearer {token()}"},
        base_env=server_environment(),
        rounds=rounds,
        seconds=seconds,
        cores=cores,
    )
    counted_requests = 200 if quick else 1000  # a fixed ~3M per run (32 connections set up)
    instructions = instruction_counts(variants, counted_requests)
    description = (
        "Each layer of `install()` alone, added to the installed app without its layers "
        "(row 0 is that app above bare Starlette), under uvicorn: memory stores, "
        f"32 connections, GC on; {load_generator_name()}; {cores.describe()}; {rounds} "
        f"interleaved rounds of {seconds:g} s; medians over rounds. Costs are server CPU "
        "µs per request above the app the layer is added to; shares are of the full "
        "stack's gap over bare Starlette. The last row is no layer: bare Starlette "
        "adding the headers the full stack's response carries and doing nothing else, "
        "what the server pays for those headers alone; no stack that sends them runs "
        "faster than bare × bare / (bare + that row)."
    )
    lowest = lowest_share_run([run for variant in variants for run in results[variant.name]])
    if lowest is not None and lowest.server_share is not None and lowest.server_core:
        split = lowest.server_core
        description += (
            f" Server CPU share: lowest {lowest.server_share:.0%} of a run (target ≥ 95%); "
            f"in that run its core went {split.other:.0%} to other processes, "
            f"{split.steal:.0%} to steal, {split.idle:.0%} idle."
        )
    description += (
        f" Instructions per request: callgrind over {counted_requests} requests per app "
        "(uvicorn's protocol in-process, GC on), a figure other work on the machine does "
        "not move."
        if instructions is not None
        else " Instructions per request: not counted (valgrind is not installed)."
    )
    return [
        Section(
            "layer-costs",
            "Cost per layer under uvicorn",
            f"{description}\n\n{layer_table(results, costs, instructions)}",
        )
    ]
