"""Every Python example of README.md and the docs pages passes ``mypy --strict``.

Each ```python block is written to a module of its own and type-checked, so an example
that imports a name hardenkit does not export, or calls it with the wrong arguments,
fails here. A block that includes a file (``--8<-- "path"``) is checked as that file.

A block that is not a whole module says so in an HTML comment on the line before it,
with the reason: ``<!-- fragment: needs the app of the block above -->`` (a line using
names defined elsewhere; a module of an untyped library). It is not type-checked; its
``hardenkit`` imports are still checked. Examples that use other packages (sentry-sdk,
the OpenAI and Anthropic SDKs, an OTLP exporter) are type-checked against them: they are
development dependencies, so nothing here is skipped.
"""

from __future__ import annotations

import ast
import importlib
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_BLOCK = re.compile(r"(?P<before>[^\n]*)\n*```python\n(?P<code>.*?)\n```", re.DOTALL)
_FRAGMENT = re.compile(r"<!-- fragment: (?P<reason>\S.*?) -->")
_MARKER = re.compile(r"<!-- fragment: .*? -->")
# pymdownx.snippets (mkdocs.yml): a line that includes a whole file, relative to the root.
_SNIPPET = re.compile(r'^--8<-- "(?P<path>[^"]+)"$', re.MULTILINE)


@dataclass(frozen=True)
class Example:
    source: Path
    line: int
    code: str
    fragment_reason: str | None

    @property
    def name(self) -> str:
        return f"{self.source.stem.replace('-', '_').lower()}_line_{self.line}"

    @property
    def where(self) -> str:
        return f"{self.source.name}:{self.line}"

    @property
    def type_checked(self) -> bool:
        return self.fragment_reason is None


def _included(match: re.Match[str]) -> str:
    path = ROOT / match["path"]
    assert path.is_file(), f"--8<-- includes {match['path']}, which is no file"
    return path.read_text(encoding="utf-8").rstrip("\n")


def examples() -> list[Example]:
    found = []
    for source in SOURCES:
        text = source.read_text(encoding="utf-8")
        for match in _BLOCK.finditer(text):
            line = text.count("\n", 0, match.start("code"))
            fragment = _FRAGMENT.search(match.group("before"))
            found.append(
                Example(
                    source,
                    line,
                    _SNIPPET.sub(_included, match.group("code")),
                    fragment["reason"] if fragment else None,
                )
            )
    return found


def test_the_sources_have_python_examples() -> None:
    by_source = {example.source.name for example in examples()}
    pages = {
        "README.md",
        *(
            f"{page}.md"
            for page in (
                "auth",
                "bodylimit",
                "cookbook",
                "errors",
                "fastapi",
                "headers",
                "health",
                "logging",
                "ratelimit",
                "requestid",
                "resilience",
                "signing",
                "telemetry",
                "testing",
                "timeouts",
                "workcontext",
            )
        ),
    }
    assert pages <= by_source


def test_a_marker_precedes_a_python_block() -> None:
    # A marker that drifted away from its block would silently exempt nothing, or the
    # wrong block; every marker must sit on the line before a ```python block.
    for source in SOURCES:
        text = source.read_text(encoding="utf-8")
        for marker in _MARKER.finditer(text):
            assert _FRAGMENT.fullmatch(marker.group(0))
            after = text[marker.end() :].lstrip("\n")
            assert after.startswith("```python"), f"{source.name}: {marker.group(0)}"


def test_the_hardenkit_imports_of_the_blocks_not_type_checked_exist() -> None:
    # mypy does not see these blocks: at least what they import from hardenkit must exist.
    for example in examples():
        if example.type_checked:
            continue
        for node in ast.walk(ast.parse(example.code)):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("hardenkit"):
                module = importlib.import_module(node.module or "")
                for alias in node.names:
                    assert hasattr(module, alias.name), f"{example.where}: {alias.name}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("hardenkit"):
                        importlib.import_module(alias.name)


@pytest.mark.slow
def test_every_whole_example_passes_mypy_strict(tmp_path: Path) -> None:
    whole = [example for example in examples() if example.type_checked]
    assert whole
    files = []
    for example in whole:
        path = tmp_path / f"{example.name}.py"
        path.write_text(example.code + "\n", encoding="utf-8")
        files.append(str(path))
    # In a subprocess: mypy's in-process API raises the interpreter's recursion limit for
    # the rest of the run, which changes what other tests see (how deep json.loads goes).
    # From the root, where an included file's own imports (examples.*) are found.
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--python-version",
            "3.11",
            "--config-file",
            str(ROOT / "pyproject.toml"),
            "--cache-dir",
            str(ROOT / ".mypy_cache"),
            *files,
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    where = {example.name: example.where for example in whole}
    report = re.sub(
        r"\S*?(\w+_line_\d+)\.py:(\d+)",
        lambda m: f"{where[m[1]]}+{m[2]}",
        result.stdout,
    )
    assert result.returncode == 0, report + result.stderr
