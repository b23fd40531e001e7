"""The import graph between hardenkit's units is the layered one docs/architecture.md draws.

A unit is a subpackage (``auth``, ``ratelimit``...) or a top-level module (``errors``,
``settings``...); ``__init__`` is the package itself. The architecture page lists the
units by layer; a unit imports only units of lower layers, at import time or later,
so configuration flows one way and no two units import each other.
"""

from __future__ import annotations

import ast
import graphlib
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "hardenkit"
ARCHITECTURE = ROOT / "docs" / "architecture.md"

# Imports made inside a function, each with why it is not at the top. A cycle is not a
# reason unless the import goes up a layer and the table below says so.
DEFERRED: dict[tuple[str, str], str] = {
    ("hardenkit", "hardenkit.resilience.httpx"): "httpx is an optional extra",
}
# Edges allowed to go up a layer, each named in docs/architecture.md: none today.
UPWARD: set[tuple[str, str]] = set()


@dataclass(frozen=True, slots=True)
class Import:
    module: str  # the importing module, dotted
    target: str  # the imported hardenkit module, dotted
    when: str  # "top", "deferred" (inside a function) or "typing" (TYPE_CHECKING only)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(SRC.rglob("*.py"))}


def imports_of(module: str, path: Path, known: set[str]) -> list[Import]:
    found: list[Import] = []
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]

    def targets(node: ast.Import | ast.ImportFrom) -> list[str]:
        if isinstance(node, ast.Import):
            return [alias.name for alias in node.names]
        base = node.module or ""
        if node.level:
            anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
            base = ".".join([*anchor, *([node.module] if node.module else [])])
        return [
            f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
            for alias in node.names
        ]

    def visit(nodes: list[ast.stmt], when: str) -> None:
        for node in nodes:
            if isinstance(node, ast.Import | ast.ImportFrom):
                found.extend(
                    Import(module, target, when)
                    for target in targets(node)
                    if target == "hardenkit" or target.startswith("hardenkit.")
                )
            elif isinstance(node, ast.If):
                test = ast.unparse(node.test)
                typing_only = "TYPE_CHECKING" in test
                negated = test.startswith("not ")  # `if not TYPE_CHECKING:` runs at run time
                visit(node.body, "typing" if typing_only and not negated else when)
                visit(node.orelse, "typing" if typing_only and negated else when)
            elif isinstance(node, ast.Try):
                for block in (node.body, node.orelse, node.finalbody):
                    visit(block, when)
                for handler in node.handlers:
                    visit(handler.body, when)
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                inner = [child for child in ast.walk(node) if isinstance(child, ast.stmt)]
                visit(
                    [child for child in inner if isinstance(child, ast.Import | ast.ImportFrom)],
                    "deferred" if when == "top" else when,
                )

    visit(ast.parse(path.read_text(encoding="utf-8")).body, "top")
    return found


def all_imports() -> list[Import]:
    found = modules()
    known = set(found)
    return [item for module, path in found.items() for item in imports_of(module, path, known)]


def layers() -> dict[str, int]:
    """Unit -> layer, read from the table in docs/architecture.md."""
    text = ARCHITECTURE.read_text(encoding="utf-8")
    table: dict[str, int] = {}
    for number, units in re.findall(r"^\| (\d+) \| ([^|]+) \|", text, re.MULTILINE):
        for name in re.findall(r"`([\w.]+)`", units):
            assert name not in table, f"{name} is in two layers of docs/architecture.md"
            table[name] = int(number)
    return table


def drawn_layers() -> dict[str, int]:
    """Unit -> layer, read from the drawing in docs/architecture.md."""
    text = ARCHITECTURE.read_text(encoding="utf-8")
    block = text.split("<!-- import layers:", 1)[1].split("```text", 1)[1].split("```", 1)[0]
    return {
        name: int(number)
        for number, names in re.findall(r"^(\d+) +(.+)$", block, re.MULTILINE)
        for name in names.split()
    }


def runtime_edges() -> set[tuple[str, str]]:
    return {
        (unit(item.module), unit(item.target))
        for item in all_imports()
        if item.when != "typing" and unit(item.module) != unit(item.target)
    }


def test_every_unit_has_a_layer_in_the_architecture_page() -> None:
    units = {unit(module) for module in modules()}
    drawn = set(layers())
    assert units - drawn == set(), "place these in docs/architecture.md's layer table"
    assert drawn - units == set(), "docs/architecture.md draws units that do not exist"


def test_the_drawing_and_the_table_of_layers_agree() -> None:
    assert drawn_layers() == layers()


def test_units_import_only_units_of_lower_layers() -> None:
    layer = layers()
    upward = {
        (source, target)
        for source, target in runtime_edges()
        if layer[target] >= layer[source] and (source, target) not in UPWARD
    }
    assert upward == set()


def test_the_units_import_each_other_in_one_direction_only() -> None:
    graph: dict[str, set[str]] = {}
    for source, target in runtime_edges() - UPWARD:
        graph.setdefault(source, set()).add(target)
    graphlib.TopologicalSorter(graph).prepare()  # raises CycleError naming the cycle


def test_at_import_time_not_even_the_documented_exceptions_make_a_cycle() -> None:
    graph: dict[str, set[str]] = {}
    for item in all_imports():
        source, target = unit(item.module), unit(item.target)
        if item.when == "top" and source != target:
            graph.setdefault(source, set()).add(target)
    assert not UPWARD & {(a, b) for a, targets in graph.items() for b in targets}
    graphlib.TopologicalSorter(graph).prepare()


def test_every_deferred_import_says_why_and_none_is_stale() -> None:
    deferred = {(item.module, item.target) for item in all_imports() if item.when == "deferred"}
    assert deferred - set(DEFERRED) == set(), "move these to the top, or list them with why"
    assert set(DEFERRED) - deferred == set(), "these are imported at the top now: unlist them"


def test_only_the_public_api_imports_install() -> None:
    importers = {item.module for item in all_imports() if item.target == "hardenkit.install"}
    assert importers == {"hardenkit"}


def test_no_feature_reads_the_composed_settings_at_runtime() -> None:
    # The composed settings are named in annotations only: a feature reads the values it
    # is given, never the environment through hardenkit.settings.
    readers = {
        item.module
        for item in all_imports()
        if item.target in {"hardenkit.settings", "hardenkit._settings"}
        or item.target.startswith("hardenkit._settings.")
    }
    runtime = {
        item.module
        for item in all_imports()
        if item.when != "typing"
        and (item.target == "hardenkit.settings" or item.target.startswith("hardenkit._settings"))
    }
    features = (
        "hardenkit.auth",
        "hardenkit.headers",
        "hardenkit.ratelimit",
        "hardenkit.resilience",
        "hardenkit.signing",
    )
    assert readers  # the scan sees the imports it judges
    assert {module for module in runtime if module.startswith(features)} == set()


def test_importing_hardenkit_alone_works() -> None:
    result = subprocess.run(
        [sys.executable, "-c", "import hardenkit, hardenkit.cli; print(len(hardenkit.__all__))"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
