"""A test that hangs ends the run with what it was waiting for, instead of running on.

A hang (a lifespan shutdown that never completes, seen once in a full local run) would
otherwise hold the whole suite until CI's limit, with nothing to say where. After
``seconds`` the guard writes the stack of every unfinished asyncio task (of every event
loop, the test client's portal included) and of every thread to stderr, and ends the
process: under ``pytest -n`` xdist reports the crashed worker and the test it ran.
"""

from __future__ import annotations

import asyncio
import faulthandler
import gc
import os
import sys
import threading

__all__ = ["HangGuard"]


class HangGuard:
    """Watch one test; :meth:`stop` when it ends."""

    def __init__(self, name: str, seconds: float) -> None:
        self.name = name
        self._ended = threading.Event()
        self._thread = threading.Thread(target=self._watch, args=(seconds,), daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._ended.set()

    def _watch(self, seconds: float) -> None:
        if self._ended.wait(seconds):
            return
        err = sys.stderr
        print(f"\n=== {self.name} still running after {seconds:.0f} s ===", file=err)
        for task in [o for o in gc.get_objects() if isinstance(o, asyncio.Task)]:
            if not task.done():
                print(f"--- {task!r}", file=err)
                task.print_stack(file=err)
        faulthandler.dump_traceback(file=err, all_threads=True)
        err.flush()
        os._exit(70)
