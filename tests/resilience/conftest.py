"""Fixtures for the resilience tests: a hand-driven clock, a private registry."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hardenkit.resilience import ResilienceRegistry
from hardenkit.resilience import testing as resilience_testing


class FakeClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def registry() -> ResilienceRegistry:
    """A registry of its own, so names never collide between tests."""
    return ResilienceRegistry()


@pytest.fixture
def waits() -> Iterator[list[float]]:
    """Retry waits recorded instead of slept."""
    with resilience_testing.waits_recorded() as recorded:
        yield recorded
