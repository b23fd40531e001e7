"""``deadline(seconds)``: a time budget for a block of work, outside or inside a request.

It narrows :data:`hardenkit.context.deadline_var` for the block (never widens it: inside
a request with 2 s left, ``deadline(10)`` still ends in 2 s). Every ``resilient`` call in
the block clamps its attempt timeouts and retry waits to the time left, and starts no
retry that cannot finish in time.
"""

from __future__ import annotations

from contextvars import Token
from types import TracebackType

from hardenkit.context import deadline_var, remaining_time, set_deadline

__all__ = ["deadline"]


class deadline:  # noqa: N801 - used like a function: ``with deadline(5):``
    """Context manager (sync ``with`` or ``async with``) bounding the work inside it.

    Args:
        seconds: Seconds from entering the block.

    Attributes:
        remaining: Seconds left (never negative), read inside the block.
    """

    __slots__ = ("_token", "seconds")

    def __init__(self, seconds: float) -> None:
        if not seconds > 0:
            raise ValueError("a deadline must be a positive number of seconds")
        self.seconds = seconds
        self._token: Token[float | None] | None = None

    @property
    def remaining(self) -> float:
        """Seconds left before the deadline in force."""
        left = remaining_time()
        return self.seconds if left is None else left

    def __enter__(self) -> deadline:
        self._token = set_deadline(self.seconds)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._token is not None:
            deadline_var.reset(self._token)
            self._token = None

    async def __aenter__(self) -> deadline:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, traceback)
