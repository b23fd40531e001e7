"""``make bench``: run every ``bench_*.py`` module and print one markdown table.

``python -m benchmarks [--quick] [--only NAME ...] [--load {auto,wrk,python}] [--output PATH]``.
Exits 1 when a figure misses its target, so a regression fails loudly; a missed figure
stays in the table, marked.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import sys
from pathlib import Path

from benchmarks._harness import Row, Section

HERE = Path(__file__).parent


def _modules(only: list[str]) -> list[str]:
    names = sorted(path.stem for path in HERE.glob("bench_*.py"))
    if only:
        names = [name for name in names if any(part in name for part in only)]
    return names


def _table(rows: list[Row]) -> str:
    lines = [
        "| piece | figure | hardenkit | peer | peer figure | ratio | target | ok |",
        "|---|---|---:|---|---:|---:|---|---|",
    ]
    lines.extend(
        f"| {row.piece} | {row.figure} | {row.ours:.2f} {row.unit} | {row.peer_name} | "
        f"{row.peer:.2f} {row.unit} | {_ratio(row)} | {row.target} | "
        f"{'yes' if row.ok else '**NO**'} |"
        for row in rows
    )
    return "\n".join(lines)


def _ratio(row: Row) -> str:
    if row.spread is None:
        return f"{row.ratio:.2f}×"
    low, high = row.spread
    return f"{row.ratio:.2f}× ({low:.2f}–{high:.2f})"


def _report(rows: list[Row], sections: list[Section]) -> str:
    parts = [
        "In-process figures are timed with the garbage collector on; throughput figures "
        "come from uvicorn under load (see the sections below the table)."
    ]
    if rows:  # a snippet section: docs/benchmarks.md shows the table as it was written
        parts.append(
            f"<!-- --8<-- [start:figures] -->\nMachine: {machine()}\n\n{_table(rows)}\n"
            "<!-- --8<-- [end:figures] -->"
        )
    parts.extend(
        f"## {section.title}\n\n<!-- --8<-- [start:{section.name}] -->\n{section.markdown}\n"
        f"<!-- --8<-- [end:{section.name}] -->"
        for section in sections
    )
    return "\n\n".join(parts)


def machine() -> str:
    """Describe the machine the figures come from."""
    return (
        f"{platform.platform()}, Python {platform.python_version()}, "
        f"{os.cpu_count()} cores ({platform.processor() or platform.machine()})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--quick", action="store_true", help="fewer iterations (smoke run)")
    parser.add_argument("--only", nargs="*", default=[], help="run modules whose name matches")
    parser.add_argument(
        "--load",
        choices=["auto", "wrk", "python"],
        default=os.environ.get("BENCH_LOAD", "auto"),
        help="load generator under uvicorn: wrk when installed (auto), or the Python client",
    )
    parser.add_argument("--output", type=Path, help="also write the table to this file")
    args = parser.parse_args(argv)
    os.environ["BENCH_LOAD"] = args.load  # read by benchmarks._throughput

    rows: list[Row] = []
    sections: list[Section] = []
    for name in _modules(args.only):
        module = importlib.import_module(f"benchmarks.{name}")
        print(f"running {name} ...", file=sys.stderr, flush=True)
        for item in module.run(args.quick):
            (sections if isinstance(item, Section) else rows).append(item)
    report = _report(rows, sections)
    print(report)
    if args.output:
        args.output.write_text(f"# Benchmark results\n\n{report}\n")
    failed = [row for row in rows if not row.ok]
    if failed:
        print(f"\n{len(failed)} figure(s) missed the target.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
