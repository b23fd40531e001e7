"""Which core serves and which cores load, and how busy a process kept its core.

A throughput figure is only the server's if the server was the bottleneck: its core
busy (close to) all the time the load ran. The benchmark pins the server to one core and
the load generator to the others, and prints the server's CPU share of every run, read
from ``/proc/<pid>/stat`` (Linux), next to how busy the server's core was with every
process (``/proc/stat``): a server short of 100% on a core that was full was crowded out
by other work on the machine, one on a core left idle was starved by its load generator.
Elsewhere both are unknown and say so.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "CorePlan",
    "core_busy",
    "core_times",
    "cpu_seconds",
    "cpu_share",
    "parse_cpu_line",
    "parse_proc_stat",
    "plan_cores",
]

# Fields after "pid (comm) ": state is the first, utime the 12th, stime the 13th.
_UTIME, _STIME = 11, 12


@dataclass(frozen=True, slots=True)
class CorePlan:
    """The cores the server runs on and the cores the load generator runs on."""

    server: frozenset[int]
    client: frozenset[int]

    @property
    def pinned(self) -> bool:
        """Whether server and client run on different cores."""
        return bool(self.server) and bool(self.client) and not self.server & self.client

    def describe(self) -> str:
        if not self.pinned:
            return "server and load generator share the cores (fewer than 2 available)"
        return (
            f"server pinned to core {_cores(self.server)}, "
            f"load generator to core {_cores(self.client)}"
        )


def _cores(cores: frozenset[int]) -> str:
    return ",".join(str(core) for core in sorted(cores))


def plan_cores(available: set[int] | None = None) -> CorePlan:
    """One core for the server, every other core this process may use for the load."""
    if available is None:
        available = set(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else set()
    cores = sorted(available)
    if len(cores) < 2:
        return CorePlan(frozenset(cores), frozenset(cores))
    return CorePlan(frozenset(cores[:1]), frozenset(cores[1:]))


def parse_proc_stat(text: str, ticks_per_second: float) -> float:
    """CPU seconds (user + system) from the text of ``/proc/<pid>/stat``.

    The command name sits in parentheses and may itself hold spaces and parentheses, so
    the fields are counted from the last closing parenthesis.
    """
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[_UTIME]) + int(fields[_STIME])) / ticks_per_second


def cpu_seconds(pid: int) -> float | None:
    """CPU seconds ``pid`` has used so far (every thread), or None where unknown."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return parse_proc_stat(text, os.sysconf("SC_CLK_TCK"))


def cpu_share(before: float | None, after: float | None, wall_seconds: float) -> float | None:
    """Share of one core a process used over ``wall_seconds`` (1.0 = always running)."""
    if before is None or after is None or wall_seconds <= 0:
        return None
    return max(0.0, after - before) / wall_seconds


def parse_cpu_line(text: str, core: int) -> tuple[int, int]:
    """(busy, total) ticks of ``core`` from the text of ``/proc/stat``.

    Idle is the ``idle`` and ``iowait`` columns; busy is every other column except
    ``guest`` and ``guest_nice``, which ``user`` and ``nice`` already include.
    """
    prefix = f"cpu{core} "
    for line in text.splitlines():
        if line.startswith(prefix):
            ticks = [int(value) for value in line.split()[1:9]]
            idle = ticks[3] + ticks[4]
            total = sum(ticks)
            return total - idle, total
    raise ValueError(f"/proc/stat has no line for core {core}")


def core_times(core: int) -> tuple[int, int] | None:
    """(busy, total) ticks of ``core`` so far, or None where unknown."""
    try:
        text = Path("/proc/stat").read_text()
    except OSError:
        return None
    return parse_cpu_line(text, core)


def core_busy(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    """Share of the time between two :func:`core_times` the core ran any process."""
    if before is None or after is None or after[1] <= before[1]:
        return None
    return (after[0] - before[0]) / (after[1] - before[1])
