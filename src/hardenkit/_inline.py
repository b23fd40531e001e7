"""Run a request's handler inside the request's own task, under a deadline.

The timeout layer used to run every handler in a second task, with a future to wait on
and a timer of its own: more event-loop turns and objects per request than the handler
itself often costs. Here the handler's coroutine is driven by the calling task (``await
InlineRun(...)`` is ``await coro`` with a hook), and the deadline is an entry in the
per-loop watchdog of :mod:`hardenkit._timer`, which cancels the task when it passes.

Almost every handler ends there: the ``CancelledError`` unwinds it and the caller
answers. A handler that, once cancelled, suspends again (an anyio task group waiting for
its children, cleanup awaiting a connection, or one that ignores the cancellation) is
*overrunning*: the caller's answer is sent at once (``on_overrun``), with the handler
parked, and the handler then gets ``grace`` seconds to end in this task. If it is still
waiting after that, it goes on in a task of its own (``detached``, a copy of the current
context) and the ``await`` returns: the response is never held hostage. Only a handler
that ignores its deadline pays for a second task.

A handler that goes on alone keeps running under another ``asyncio.current_task()``;
anything it entered that is bound to the first task (``asyncio.timeout``, a
``TaskGroup``, an anyio cancel scope) sees the difference when it exits. That is the
price of ignoring a cancellation for longer than the grace period.
"""

from __future__ import annotations

import asyncio
import contextvars
import types
from collections.abc import Awaitable, Callable, Generator
from typing import Any

import anyio

from hardenkit._timer import AttemptWatch

__all__ = ["InlineRun"]


class InlineRun:
    """``await InlineRun(handler, attempt, ...)`` is ``await handler``, with a deadline.

    Args:
        handler: The handler's awaitable (the ASGI app's call).
        attempt: Its deadline in the watchdog; ``attempt.expired`` once it cancelled us.
        on_overrun: Awaited (with the handler parked) when the handler suspends again
            after its deadline's cancellation.
        grace: Seconds an overrunning handler gets before it goes on alone.

    After the await, ``detached`` is the task the handler went on in, if it did.
    """

    __slots__ = ("_attempt", "_coro", "_grace", "_on_overrun", "detached")

    def __init__(
        self,
        handler: Awaitable[None],
        attempt: AttemptWatch,
        *,
        on_overrun: Callable[[], Awaitable[None]],
        grace: float,
    ) -> None:
        self._coro = handler.__await__()
        self._attempt = attempt
        self._on_overrun = on_overrun
        self._grace = grace
        self.detached: asyncio.Task[None] | None = None

    def __await__(self) -> Generator[Any, Any, None]:
        coro = self._coro
        value: Any = None
        error: BaseException | None = None
        while True:
            try:
                yielded = coro.send(value) if error is None else coro.throw(error)
            except StopIteration:
                return
            if error is not None and self._attempt.expired:
                yield from self._overrun(yielded)
                return
            try:
                value, error = (yield yielded), None
            except BaseException as thrown:  # noqa: BLE001 - every throw goes to the coroutine
                value, error = None, thrown

    def _overrun(self, yielded: Any) -> Generator[Any, Any, None]:
        """Answer now, then let the handler end within ``grace`` or go on alone."""
        # Shielded: the parked handler may sit in a cancelled anyio scope of this task (a
        # task group waiting for its children, as a user's BaseHTTPMiddleware inside the
        # stack has), which would cancel the answer too when its send awaits (a user's
        # BaseHTTPMiddleware outside the stack sends through an anyio stream). For
        # ``grace`` at most, as long as the handler may hold on: the shield also holds off
        # an outer scope's cancellation, and a send nobody reads (that outer middleware
        # gave up on the response) would never end. A reader that takes its time (one
        # that writes an audit record before it reads the body) gets the answer.
        with anyio.CancelScope(shield=True) as answering:  # noqa: ASYNC100 - yield from awaits
            answering.deadline = anyio.current_time() + self._grace
            yield from self._on_overrun().__await__()
        coro = self._coro
        loop = asyncio.get_running_loop()
        until = loop.time() + self._grace
        while True:
            error: BaseException | None = None
            try:
                if asyncio.isfuture(yielded):
                    left = until - loop.time()
                    if not yielded.done() and left > 0:
                        yield from asyncio.wait({yielded}, timeout=left).__await__()
                    if not yielded.done():
                        self._detach(yielded)
                        return
                    yielded._asyncio_future_blocking = False  # awaited here, not by a task
                elif loop.time() < until:
                    yield yielded  # a bare yield: one loop turn
                else:
                    self._detach(yielded)
                    return
            except BaseException as thrown:  # noqa: BLE001 - cancelled from outside as well
                if asyncio.isfuture(yielded):
                    yielded.cancel()  # what a task cancelled while awaiting it does
                error = thrown
            try:
                yielded = coro.send(None) if error is None else coro.throw(error)
            except StopIteration:
                return

    def _detach(self, yielded: Any) -> None:
        self.detached = asyncio.get_running_loop().create_task(
            _carry_on(self._coro, yielded), context=contextvars.copy_context()
        )


async def _carry_on(coro: Generator[Any, Any, None], yielded: Any) -> None:
    await _drive(coro, yielded)


@types.coroutine
def _drive(coro: Generator[Any, Any, None], yielded: Any) -> Generator[Any, Any, None]:
    """Drive ``coro`` on from the point where it yielded ``yielded``, in the running task."""
    while True:
        try:
            value = yield yielded
        except BaseException as thrown:  # noqa: BLE001 - every throw goes to the coroutine
            try:
                yielded = coro.throw(thrown)
            except StopIteration:
                return
        else:
            try:
                yielded = coro.send(value)
            except StopIteration:
                return
