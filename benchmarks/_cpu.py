"""Which core serves and which cores load, and how busy a process kept its core.

A throughput figure is only the server's if the server was the bottleneck: its core
busy (close to) all the time the load ran. The benchmark pins the server it loads to one
core and everything else (the load generator, the servers waiting for their turn, Redis,
the harness itself) to the others, and prints the server's CPU share of every run, timed
by the scheduler (``/proc/<pid>/task/*/schedstat``, Linux), next to where the rest of the
server's core went (``/proc/stat``): other processes (the server was crowded out), the
hypervisor (steal: the virtual core did not run), or idle (the load generator starved
it). Interrupt work is shown too: without ``CONFIG_IRQ_TIME_ACCOUNTING`` the kernel counts
the softirq it runs in the server's context (the loopback traffic of its own sockets) as
the server's time, so that part is inside the server's share. Elsewhere all of it is
unknown and says so.
"""

from __future__ import annotations

import os
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "CorePlan",
    "CoreSplit",
    "CoreTimes",
    "core_busy",
    "core_times",
    "cpu_seconds",
    "cpu_share",
    "keep_off_server_core",
    "parse_cpu_line",
    "parse_proc_stat",
    "parse_schedstat",
    "pin_process",
    "plan_cores",
    "split_core",
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


def parse_schedstat(text: str) -> float:
    """CPU seconds from the text of ``/proc/<pid>/task/<tid>/schedstat``.

    Its first field is the nanoseconds the thread ran, timed by the scheduler at every
    switch: exact, where ``/proc/<pid>/stat`` samples at each clock tick.
    """
    return int(text.split(maxsplit=1)[0]) / 1e9


def cpu_seconds(pid: int) -> float | None:
    """CPU seconds ``pid`` has used so far (its live threads), or None where unknown.

    Timed exactly by the scheduler (``schedstat``) where the kernel keeps it, else sampled
    at each clock tick (``stat``). Tick sampling read the server's share up to 12% high
    next to the exactly timed idle of its core, so the shares in the tables are only
    comparable when timed. A thread that ended between two readings drops out of the
    later one: uvicorn's servers keep theirs.
    """
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
        return sum(
            parse_schedstat(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text()) for tid in tasks
        )
    except (OSError, ValueError, IndexError):
        pass
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


@dataclass(frozen=True, slots=True)
class CoreTimes:
    """Ticks a core spent so far, by ``/proc/stat`` column (``guest`` is inside ``user``)."""

    user: int
    nice: int
    system: int
    idle: int
    iowait: int
    irq: int
    softirq: int
    steal: int

    @property
    def total(self) -> int:
        return (
            self.user + self.nice + self.system + self.idle + self.iowait
            + self.irq + self.softirq + self.steal
        )  # fmt: skip

    @property
    def busy(self) -> int:
        """Ticks the core ran anything of this machine: every column but idle and steal."""
        return self.total - self.idle - self.iowait - self.steal

    def __sub__(self, other: CoreTimes) -> CoreTimes:
        return CoreTimes(*(getattr(self, name) - getattr(other, name) for name in self.__slots__))


@dataclass(frozen=True, slots=True)
class CoreSplit:
    """Where the server's core went during one run, each a share of the run's wall time.

    ``server + other + steal + idle`` is the whole run. Idle and steal are measured
    (the kernel times idle periods exactly, the hypervisor reports steal); the server's
    share is its exact run time; ``other`` is what is left, the other processes of this
    machine. The busy columns of ``/proc/stat`` are sampled at each tick instead, and
    miss busy time between idle periods, so they serve only for ``interrupts``: irq and
    softirq ticks as a share of the core's ticks, work the kernel charges to the process
    it interrupted (the server's own loopback traffic is inside its share).
    """

    other: float  # processes other than the server
    steal: float  # the hypervisor ran something else: the virtual core did not run
    idle: float  # nothing to run: the server waited for its load generator
    interrupts: float  # irq + softirq, sampled; overlaps ``server`` and ``other``


def parse_cpu_line(text: str, core: int) -> CoreTimes:
    """The ticks of ``core`` from the text of ``/proc/stat``."""
    prefix = f"cpu{core} "
    for line in text.splitlines():
        if line.startswith(prefix):
            return CoreTimes(*(int(value) for value in line.split()[1:9]))
    raise ValueError(f"/proc/stat has no line for core {core}")


def core_times(core: int) -> CoreTimes | None:
    """The ticks of ``core`` so far, or None where unknown."""
    try:
        text = Path("/proc/stat").read_text()
    except OSError:
        return None
    return parse_cpu_line(text, core)


def core_busy(before: CoreTimes | None, after: CoreTimes | None) -> float | None:
    """Share of the time between two :func:`core_times` the core ran any process."""
    if before is None or after is None or after.total <= before.total:
        return None
    spent = after - before
    return spent.busy / spent.total


def split_core(
    before: CoreTimes | None,
    after: CoreTimes | None,
    server_share: float | None,
    wall_seconds: float,
    ticks_per_second: float | None = None,
) -> CoreSplit | None:
    """Where the core went over ``wall_seconds`` between two :func:`core_times`."""
    if before is None or after is None or server_share is None or after.total <= before.total:
        return None
    if wall_seconds <= 0:
        return None
    ticks = (ticks_per_second or os.sysconf("SC_CLK_TCK")) * wall_seconds
    spent = after - before
    idle = min(1.0, (spent.idle + spent.iowait) / ticks)
    steal = min(1.0 - idle, spent.steal / ticks)
    return CoreSplit(
        # Times are read to the tick: a remainder a tick below zero is none at all.
        other=max(0.0, 1.0 - server_share - idle - steal),
        steal=steal,
        idle=idle,
        interrupts=(spent.irq + spent.softirq) / spent.total,
    )


def pin_process(pid: int, cores: frozenset[int]) -> None:
    """Pin every thread of ``pid`` to ``cores`` (threads it starts later inherit it)."""
    if not cores or not hasattr(os, "sched_setaffinity"):
        return
    try:
        threads = [int(tid) for tid in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        threads = [pid]
    for tid in threads:
        try:
            os.sched_setaffinity(tid, cores)
        except ProcessLookupError:  # the thread ended meanwhile
            continue


def keep_off_server_core(cores: CorePlan, stack: ExitStack) -> None:
    """Run this process on the load generator's cores until ``stack`` closes (if pinned)."""
    if not cores.pinned or not hasattr(os, "sched_setaffinity"):
        return
    stack.callback(os.sched_setaffinity, 0, os.sched_getaffinity(0))
    os.sched_setaffinity(0, cores.client)
