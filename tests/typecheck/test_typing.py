"""Public signatures as users' type checkers see them: mypy --strict over tests/typecheck/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


@pytest.mark.slow
@pytest.mark.parametrize("checked", sorted(HERE.glob("*_signatures.py")), ids=lambda p: p.stem)
def test_users_code_type_checks_under_mypy_strict(checked: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--config-file",
            str(ROOT / "pyproject.toml"),
            # The project's cache, which `make typecheck` filled with the same options:
            # the libraries are not analysed again for every file.
            "--cache-dir",
            str(ROOT / ".mypy_cache"),
            str(checked),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_a_coroutine_function_that_lost_its_type_is_caught(tmp_path: Path) -> None:
    # The check above can fail: the same use of a wrapper typed Callable[..., Awaitable]
    # is what mypy rejected before (create_task needs a coroutine).
    source = (
        "import asyncio\n"
        "from collections.abc import Awaitable, Callable\n"
        "def wrapped() -> Callable[[], Awaitable[int]]: ...\n"
        "async def use() -> None:\n"
        "    asyncio.create_task(wrapped()())\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "-c", source],
        capture_output=True,
        text=True,
        cwd=tmp_path,  # not the project's config, whose `files` would clash with -c
        check=False,
    )
    assert result.returncode == 1
    assert "create_task" in result.stdout


@pytest.mark.slow
def test_a_name_hardenkit_does_not_export_is_a_type_error(tmp_path: Path) -> None:
    # A module __getattr__ visible to mypy would type it as that function's return type
    # (object) instead: `from hardenkit import ClaimOutcome` passed, then failed on use.
    source = "from hardenkit import NoSuchName, ResilientTransport\n"
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "-c", source],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 1, result.stdout
    assert 'Module "hardenkit" has no attribute "NoSuchName"' in result.stdout
    assert "ResilientTransport" not in result.stdout  # the lazy export stays typed
