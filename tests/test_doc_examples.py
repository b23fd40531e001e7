"""Every Python example of README.md, the cookbook and the pages below passes ``mypy --strict``.

The pages users copy their first lines from: auth, health, body limits, signing. The other
pages' examples are not checked yet (most are fragments of a larger app).

A block that is not a whole module (a fragment that uses names defined elsewhere) says
so in an HTML comment on the line before it, with a reason:
``<!-- fragment: needs the app of the block above -->``. Nothing is skipped silently.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").glob("cookbook*.md")),
    *(ROOT / "docs" / page for page in ("auth.md", "health.md", "bodylimit.md", "signing.md")),
]
_BLOCK = re.compile(r"(?P<before>[^\n]*)\n*```python\n(?P<code>.*?)\n```", re.DOTALL)
_FRAGMENT = re.compile(r"<!-- fragment: (?P<reason>\S.*?) -->")


@dataclass(frozen=True)
class Example:
    source: Path
    line: int
    code: str
    fragment_reason: str | None

    @property
    def name(self) -> str:
        return f"{self.source.stem.replace('-', '_').lower()}_line_{self.line}"


def examples() -> list[Example]:
    found = []
    for source in SOURCES:
        text = source.read_text(encoding="utf-8")
        for match in _BLOCK.finditer(text):
            line = text.count("\n", 0, match.start("code"))
            marker = _FRAGMENT.search(match.group("before"))
            found.append(
                Example(source, line, match.group("code"), marker["reason"] if marker else None)
            )
    return found


def test_the_sources_have_python_examples() -> None:
    by_source = {example.source.name for example in examples()}
    assert {
        "README.md",
        "cookbook.md",
        "auth.md",
        "health.md",
        "bodylimit.md",
        "signing.md",
    } <= by_source


def test_a_fragment_marker_precedes_a_python_block() -> None:
    # A marker that drifted away from its block would silently exempt nothing, or the
    # wrong block; every marker must sit on the line before a ```python block.
    for source in SOURCES:
        text = source.read_text(encoding="utf-8")
        for marker in _FRAGMENT.finditer(text):
            after = text[marker.end() :].lstrip("\n")
            assert after.startswith("```python"), f"{source.name}: {marker.group(0)}"


@pytest.mark.slow
def test_every_whole_example_passes_mypy_strict(tmp_path: Path) -> None:
    whole = [example for example in examples() if example.fragment_reason is None]
    assert whole
    files = []
    for example in whole:
        path = tmp_path / f"{example.name}.py"
        path.write_text(example.code + "\n", encoding="utf-8")
        files.append(str(path))
    # In a subprocess: mypy's in-process API raises the interpreter's recursion limit for
    # the rest of the run, which changes what other tests see (how deep json.loads goes).
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
    )
    where = {example.name: f"{example.source.name}:{example.line}" for example in whole}
    report = re.sub(
        r"\S*?(\w+_line_\d+)\.py:(\d+)",
        lambda m: f"{where[m[1]]}+{m[2]}",
        result.stdout,
    )
    assert result.returncode == 0, report + result.stderr
