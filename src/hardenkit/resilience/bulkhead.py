"""Bulkhead: at most ``max_concurrent`` calls in flight per name, a bounded queue behind.

A slow dependency must not take every worker with it. Calls beyond the limit wait in a
queue of at most ``max_waiting`` for at most ``max_wait`` seconds (clamped to the
deadline), then are refused with :class:`BulkheadFullError`. A freed slot is handed to
the longest waiter directly, so a newcomer cannot overtake the queue. One bulkhead serves
threads and coroutines (of any event loop) alike.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from types import TracebackType

from hardenkit.context import remaining_time
from hardenkit.resilience.errors import BulkheadFullError

__all__ = ["Bulkhead"]


class _Waiter:
    __slots__ = ("event", "future", "granted", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop | None) -> None:
        self.granted = False
        self.loop = loop
        self.event: threading.Event | None = None if loop else threading.Event()
        self.future: asyncio.Future[None] | None = loop.create_future() if loop else None

    def wake(self) -> None:
        if self.event is not None:
            self.event.set()
        elif self.loop is not None and self.future is not None:
            self.loop.call_soon_threadsafe(_resolve, self.future)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class Bulkhead:
    """A concurrency limit with a bounded wait queue.

    Use ``with bulkhead:`` / ``async with bulkhead:``, or pass it to ``resilient``.

    Args:
        name: Names the bulkhead in errors and logs.
        max_concurrent: Calls allowed in flight at once.
        max_waiting: Calls allowed to wait for a slot (0: refuse at once when full).
        max_wait: Longest wait for a slot, in seconds (the deadline may shorten it).
    """

    def __init__(
        self, name: str, *, max_concurrent: int, max_waiting: int = 0, max_wait: float = 1.0
    ) -> None:
        if max_concurrent < 1 or max_waiting < 0 or max_wait < 0:
            raise ValueError("max_concurrent >= 1, max_waiting >= 0 and max_wait >= 0")
        self.name = name
        self.max_concurrent = max_concurrent
        self.max_waiting = max_waiting
        self.max_wait = max_wait
        self._lock = threading.Lock()
        self._active = 0
        self._waiters: deque[_Waiter] = deque()

    @property
    def active(self) -> int:
        """Calls in flight."""
        return self._active

    @property
    def waiting(self) -> int:
        """Calls waiting for a slot."""
        return len(self._waiters)

    def _enter_or_queue(self, loop: asyncio.AbstractEventLoop | None) -> _Waiter | None:
        with self._lock:
            if self._active < self.max_concurrent and not self._waiters:
                self._active += 1
                return None
            if len(self._waiters) >= self.max_waiting:
                raise BulkheadFullError(self.name)
            waiter = _Waiter(loop)
            self._waiters.append(waiter)
            return waiter

    def _wait_budget(self) -> float:
        left = remaining_time()
        return self.max_wait if left is None else min(self.max_wait, left)

    def _give_up(self, waiter: _Waiter) -> bool:
        """Leave the queue; return whether a slot was granted meanwhile."""
        with self._lock:
            if waiter.granted:
                return True
            self._waiters.remove(waiter)
            return False

    def acquire(self) -> None:
        """Take a slot, waiting in a thread if allowed; raise :class:`BulkheadFullError`."""
        waiter = self._enter_or_queue(None)
        if waiter is None:
            return
        assert waiter.event is not None  # noqa: S101 - a thread waiter has an event
        if not waiter.event.wait(self._wait_budget()) and not self._give_up(waiter):
            raise BulkheadFullError(self.name)

    async def acquire_async(self) -> None:
        """Take a slot, waiting in the event loop if allowed."""
        waiter = self._enter_or_queue(asyncio.get_running_loop())
        if waiter is None:
            return
        assert waiter.future is not None  # noqa: S101 - a loop waiter has a future
        try:
            async with asyncio.timeout(self._wait_budget()):
                await waiter.future
        except TimeoutError:
            if not self._give_up(waiter):
                raise BulkheadFullError(self.name) from None
        except BaseException:
            if self._give_up(waiter):
                self.release()  # granted while being cancelled: pass the slot on
            raise

    def release(self) -> None:
        """Free a slot, handing it to the longest waiter if there is one."""
        with self._lock:
            if self._waiters:
                waiter = self._waiters.popleft()
                waiter.granted = True
                waiter.wake()
                return
            self._active -= 1

    def __enter__(self) -> Bulkhead:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()

    async def __aenter__(self) -> Bulkhead:
        await self.acquire_async()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()
