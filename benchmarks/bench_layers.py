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
machine does not move. Where they are counted, each layer's instructions inside the
full stack stand next to them too: the full stack's count minus the count of the full
stack without that layer. That is what turning the layer off saves; a layer alone pays
what the first hardenkit layer of a request pays for all of them.
Two reference rows are in no sum: bare Starlette sending the full stack's headers and
doing nothing else (the floor under any stack that sends them), and the stack's
essential work in one lean middleware with none of its guarantees (``_lean_stack.py``):
the difference between that row and the full stack is the price of the guarantees.
Reported, no target: docs/architecture.md includes this table.
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
LEAN = "the essential work in one lean middleware, none of the guarantees (_lean_stack.py)"
_AUTH = "AuthMiddleware"


def _label(cls_name: str, kwargs: dict[str, object]) -> str:
    rules = kwargs.get("rules")
    if isinstance(rules, list) and rules:
        return f"{cls_name} ({', '.join(str(getattr(rule, 'name', '?')) for rule in rules)})"
    return cls_name


def layer_variants() -> tuple[list[Variant], list[tuple[str, str, str]], dict[str, Variant]]:
    """The apps to load; per layer (label, its variant, the variant it is added to); and
    per layer label, the full stack without that layer (counted, not loaded)."""
    with mock.patch.dict(os.environ, server_environment(), clear=True):
        layers = installed_layers()
    names = [getattr(layer.cls, "__name__", repr(layer.cls)) for layer in layers]
    auth = names.index(_AUTH) if _AUTH in names else None
    variants = [
        Variant(BARE, "bare"),
        Variant(FULL, "hardened"),
        Variant(NO_LAYER, "layer", {"BENCH_LAYER": ""}),
        Variant(HEADERS, "bare_headers"),
        Variant(LEAN, "lean"),
    ]
    # Each layer is added to the installed app without layers, so what install() adds
    # besides middleware (routes matched before the app's, handlers) is counted once.
    costs: list[tuple[str, str, str]] = [(NO_LAYER, NO_LAYER, BARE)]
    without: dict[str, Variant] = {}
    for index, layer in enumerate(layers):
        label = f"{index + 1}. {_label(names[index], layer.kwargs)}"
        others = ",".join(str(other) for other in range(len(layers)) if other != index)
        without[label] = Variant(f"full stack without {label}", "layer", {"BENCH_LAYER": others})
        if auth is not None and index > auth:
            # Without a verified principal this layer has nothing to count.
            name = f"{label}, with auth"
            variants.append(Variant(name, "layer", {"BENCH_LAYER": f"{auth},{index}"}))
            costs.append((label, name, f"{auth + 1}. {names[auth]}"))
        else:
            variants.append(Variant(label, "layer", {"BENCH_LAYER": str(index)}))
            costs.append((label, label, NO_LAYER))
    return variants, costs, without


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
    without: dict[str, str] | None = None,
) -> str:
    """The add-one-layer table: µs per request above bare and share of the full gap.

    ``without`` names, per layer label, the counted variant that is the full stack
    without that layer: its instructions in the full stack are the difference.
    """
    gap = _above(results, FULL, BARE, _cpu_us)
    gap_throughput = _above(results, FULL, BARE, _throughput_us)
    counted = instructions or {}
    removed = without or {}

    def above(name: str, base: str) -> str:
        if name not in counted or base not in counted:
            return ""
        return _thousands(counted[name] - counted[base])

    lines = [
        "| layer (install order) | server CPU µs/request | share of the gap "
        "| µs/request from req/s | instructions/request | instructions/request in the "
        "full stack |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    total = 0.0
    total_counted = 0.0
    total_in_stack = 0.0
    for label, name, base in costs:
        cost = _above(results, name, base, _cpu_us)
        total += cost
        if name in counted and base in counted:
            total_counted += counted[name] - counted[base]
        in_stack = ""
        if label in removed:
            in_stack = above(FULL, removed[label])
            if in_stack:
                total_in_stack += counted[FULL] - counted[removed[label]]
        throughput = _above(results, name, base, _throughput_us)
        lines.append(
            f"| {label} | {cost:.1f} | {cost / gap:.0%} | {throughput:.1f} "
            f"| {above(name, base)} | {in_stack} |"
        )
    gap_counted = above(FULL, BARE)
    together = counted[FULL] - counted[BARE] if gap_counted else 0.0
    lines += [
        f"| sum of the layers | {total:.1f} | {total / gap:.0%} | "
        f"| {_thousands(total_counted) if counted else ''} "
        f"| {_thousands(total_in_stack) if total_in_stack else ''} |",
        f"| full stack above bare (the gap) | {gap:.1f} | 100% | {gap_throughput:.1f} "
        f"| {gap_counted} | {gap_counted} |",
        f"| not in the sum (running them together) | {gap - total:.1f} "
        f"| {(gap - total) / gap:.0%} | "
        f"| {_thousands(together - total_counted) if gap_counted else ''} "
        f"| {_thousands(together - total_in_stack) if total_in_stack else ''} |",
        f"| bare Starlette itself | "
        f"{statistics.median(_cpu_us(run) for run in results[BARE]):.1f} | | "
        f"{statistics.median(_throughput_us(run) for run in results[BARE]):.1f} "
        f"| {_thousands(counted[BARE]) if BARE in counted else ''} | |",
    ]
    for reference in (HEADERS, LEAN):  # references, in no sum
        if reference in results:
            cost = _above(results, reference, BARE, _cpu_us)
            lines.append(
                f"| {reference} (above bare) | {cost:.1f} | {cost / gap:.0%} "
                f"| {_above(results, reference, BARE, _throughput_us):.1f} "
                f"| {above(reference, BARE)} | |"
            )
    return "\n".join(lines)


def _share_of_bare(results: dict[str, list[Measurement]], name: str) -> float:
    """Median over rounds of ``name``'s requests per second as a share of bare's."""
    return statistics.median(
        mine.per_second / bare.per_second
        for mine, bare in zip(results[name], results[BARE], strict=True)
    )


def run(quick: bool) -> list[Row | Section]:
    rounds, seconds = (2, 2.0) if quick else (5, 2.0)
    cores = plan_cores()
    variants, costs, without = layer_variants()
    results = measure_rounds(
        variants,
        headers={"Authorization": f"Bearer {token()}"},
        base_env=server_environment(),
        rounds=rounds,
        seconds=seconds,
        cores=cores,
    )
    counted_requests = 200 if quick else 1000  # a fixed ~3M per run (32 connections set up)
    instructions = instruction_counts([*variants, *without.values()], counted_requests)
    description = (
        "Each layer of `install()` alone, added to the installed app without its layers "
        "(row 0 is that app above bare Starlette), under uvicorn: memory stores, "
        f"32 connections, GC on; {load_generator_name()}; {cores.describe()}; {rounds} "
        f"interleaved rounds of {seconds:g} s; medians over rounds. Costs are server CPU "
        "µs per request above the app the layer is added to; shares are of the full "
        "stack's gap over bare Starlette. A layer alone is the first hardenkit layer of "
        "its request and pays what that layer pays for all of them (the request's facts, "
        "its last message sent clean); the last column is what the layer costs in the "
        "full stack, the full stack without it subtracted, what turning it off saves "
        "(without the auth layer, the per-tenant limit has no tenant to count: the auth "
        "row includes that limit's work). The last two rows are references in no sum: "
        "bare Starlette adding the headers the full stack's response carries and doing "
        "nothing else, what the server pays for those headers alone (no stack that sends "
        "them runs faster than bare × bare / (bare + that row)); and the stack's "
        "essential work (request id, cached token check, two memory limits, deadline, "
        "the same headers) in one lean middleware with none of the guarantees "
        "(`benchmarks/_lean_stack.py`): the full stack above it is what the guarantees "
        "cost. Requests per second as a share of bare Starlette's in this run (median "
        f"over rounds): full stack {_share_of_bare(results, FULL):.2f}×, lean middleware "
        f"{_share_of_bare(results, LEAN):.2f}×, header floor "
        f"{_share_of_bare(results, HEADERS):.2f}×."
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
    in_stack = {label: variant.name for label, variant in without.items()}
    return [
        Section(
            "layer-costs",
            "Cost per layer under uvicorn",
            f"{description}\n\n{layer_table(results, costs, instructions, in_stack)}",
        )
    ]
