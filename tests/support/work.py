"""Count the work a call does, in calls, whatever the machine's speed.

A bound on work that must not grow with a client's input (a header's size) is a count,
not a timing: counted calls are the same on an idle and a busy machine.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

__all__ = ["python_calls"]


@contextmanager
def python_calls() -> Iterator[list[int]]:
    """Count the calls (Python functions and builtins) made inside the ``with`` block.

    Yields a one-item list holding the count, filled when the block ends. Uses the
    profiling hook (``sys.setprofile``), which coverage's tracer does not use.
    """
    counted = [0]

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        if event in ("call", "c_call"):
            counted[0] += 1

    previous = sys.getprofile()
    sys.setprofile(profile)
    try:
        yield counted
    finally:
        sys.setprofile(previous)
