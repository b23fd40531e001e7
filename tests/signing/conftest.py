"""Helpers shared by the signing tests: a recorder for refusals (audit events and metric)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import structlog

from hardenkit.signing import _refusal


@dataclass
class Refusals:
    """Audit events and metric points recorded while a test runs."""

    logs: list[Any] = field(default_factory=list)
    metric: list[tuple[int, dict[str, str]]] = field(default_factory=list)

    @property
    def events(self) -> list[dict[str, Any]]:
        return [entry for entry in self.logs if entry.get("event_type") == "signature"]

    @property
    def reasons(self) -> list[str]:
        return [event["reason"] for event in self.events]


class _Counter:
    def __init__(self, sink: list[tuple[int, dict[str, str]]]) -> None:
        self.sink = sink

    def add(self, amount: int, attributes: dict[str, str]) -> None:
        self.sink.append((amount, dict(attributes)))


@pytest.fixture
def refusals(monkeypatch: pytest.MonkeyPatch) -> Iterator[Refusals]:
    """Record every signature refusal's audit event and metric point."""
    recorded = Refusals()
    monkeypatch.setattr(_refusal, "signature_failures", _Counter(recorded.metric))
    with structlog.testing.capture_logs() as logs:
        recorded.logs = logs
        yield recorded
