"""Startup refusals held back while ``hardenkit doctor --app`` imports an app.

``install()`` refuses unsafe settings and routes by raising, which stops the import of
the module that calls it: ``hardenkit doctor --app`` then never had an app whose routes
it could check, and listed only the first refusal (a new-user review needed three
rounds of fix and rerun). Inside :func:`collecting`, :func:`refuse` records the refusal
instead and ``install()`` goes on with the settings it refused, so the doctor sees the
whole app and lists every problem at once. Only the doctor enters it: everywhere else
:func:`refuse` raises, as it always did.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = ["collecting", "refuse"]

_collected: ContextVar[list[Exception] | None] = ContextVar("hardenkit_refusals", default=None)


@contextmanager
def collecting() -> Iterator[list[Exception]]:
    """Record the refusals made inside the block, in order, instead of raising them."""
    collected: list[Exception] = []
    token = _collected.set(collected)
    try:
        yield collected
    finally:
        _collected.reset(token)


def refuse(error: Exception) -> None:
    """Raise ``error``; inside :func:`collecting`, record it and return instead."""
    collected = _collected.get()
    if collected is None:
        raise error
    collected.append(error)
