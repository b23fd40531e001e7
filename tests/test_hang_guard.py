"""The suite's hang guard ends a stuck run with the stacks of what it waited for."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

STUCK = textwrap.dedent(
    """
    import asyncio
    from tests.support.hang_guard import HangGuard

    async def never_answered() -> None:
        await asyncio.get_running_loop().create_future()

    HangGuard("tests/x.py::test_stuck", 0.5)
    asyncio.run(never_answered())
    """
)


def run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_a_hung_test_ends_the_process_with_the_stack_it_waits_in() -> None:
    done = run(STUCK)
    assert done.returncode == 70
    assert "tests/x.py::test_stuck still running after 0 s" in done.stderr
    assert "never_answered" in done.stderr  # the coroutine the task is stuck in
    assert "Thread" in done.stderr  # and every thread's stack


def test_a_test_that_ends_stops_its_guard() -> None:
    finished = textwrap.dedent(
        """
        import time
        from tests.support.hang_guard import HangGuard

        HangGuard("t", 0.3).stop()
        time.sleep(0.6)
        print("ran on")
        """
    )
    done = run(finished)
    assert (done.returncode, done.stdout.strip()) == (0, "ran on")
