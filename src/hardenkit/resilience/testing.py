"""A switch that removes retry waits, for test suites (like ``stamina.set_testing``).

While testing is on, every wait a retry would sleep is recorded instead of slept, so a
test can assert the waits that production would use and still run in microseconds::

    from hardenkit.resilience import testing

    def test_backs_off() -> None:
        with testing.waits_recorded() as waits:
            ...
        assert waits == [2.0]

``resilient()`` parses the ``HARDENKIT_RESILIENT_*`` overrides once per process; a test
that sets them calls :func:`reset_overrides` first, so the next ``resilient()`` reads
them again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager

from hardenkit.resilience._config import CONFIG

__all__ = [
    "is_testing",
    "reset_overrides",
    "set_testing",
    "sleep",
    "sleep_async",
    "waits_recorded",
]


def set_testing(testing: bool) -> None:
    """Turn the testing switch on (waits are recorded, not slept) or off."""
    CONFIG.testing = testing


def is_testing() -> bool:
    """Whether retry waits are currently skipped."""
    return CONFIG.testing


def reset_overrides() -> None:
    """Forget the ``HARDENKIT_RESILIENT_*`` overrides in force (parsed, or set by install).

    The next ``resilient()`` parses the environment again.
    """
    CONFIG.overrides = None


@contextmanager
def waits_recorded() -> Iterator[list[float]]:
    """Turn testing on for the block and yield the list of waits it skipped."""
    previous_testing, previous_waits = CONFIG.testing, CONFIG.waits
    waits: list[float] = []
    CONFIG.testing, CONFIG.waits = True, waits
    try:
        yield waits
    finally:
        CONFIG.testing, CONFIG.waits = previous_testing, previous_waits


def _skip(seconds: float) -> bool:
    if not CONFIG.testing:
        return False
    if CONFIG.waits is not None:
        CONFIG.waits.append(seconds)
    return True


def sleep(seconds: float) -> None:
    """Sleep ``seconds`` in a thread, unless testing."""
    if not _skip(seconds):
        time.sleep(seconds)


async def sleep_async(seconds: float) -> None:
    """Sleep ``seconds`` in the event loop, unless testing."""
    if not _skip(seconds):
        await asyncio.sleep(seconds)
