"""Circuit breaker states and the events emitted when a breaker changes state.

Every transition is reported three ways: the ``hardenkit.breaker.transitions`` counter
(and the ``hardenkit.breaker.state`` gauge),
an audit line (``event_type="breaker_state"``), and the callbacks registered on the
breaker or its registry. A callback that raises is logged and otherwise ignored: an
observer must never break the call it observes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum

import structlog

from hardenkit.logs.audit import AuditEventType, audit
from hardenkit.telemetry import breaker_state, breaker_transitions

__all__ = ["BreakerState", "StateChange", "StateListener", "emit_state_change"]

_logger = structlog.get_logger("hardenkit.resilience")


class BreakerState(StrEnum):
    """Where a circuit breaker stands.

    ``CLOSED`` lets calls through and measures them; ``OPEN`` refuses them until its wait
    is over; ``HALF_OPEN`` lets a few trial calls through to decide; ``FORCED_OPEN`` and
    ``DISABLED`` are set by an operator and never change by themselves.
    """

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"
    FORCED_OPEN = "forced_open"
    DISABLED = "disabled"


@dataclass(frozen=True, slots=True)
class StateChange:
    """One transition of one breaker.

    Attributes:
        breaker: The breaker's name.
        previous: The state it left.
        current: The state it entered.
        reason: Why: ``failure_rate``, ``slow_call_rate``, ``wait_elapsed``,
            ``trial_succeeded``, ``trial_failed`` or ``operator``.
        failure_rate: Failure rate in percent that caused it, when a rate did.
        slow_call_rate: Slow-call rate in percent that caused it, when a rate did.
        shared: Whether the transition happened in the state shared through Redis.
    """

    breaker: str
    previous: BreakerState
    current: BreakerState
    reason: str
    failure_rate: float | None = None
    slow_call_rate: float | None = None
    shared: bool = False


# hardenkit.breaker.state: 0 closed, 1 half-open, 2 open (an operator's states map to
# what they do: forced open refuses like open, disabled lets everything through).
_GAUGE_VALUE = {
    BreakerState.CLOSED: 0,
    BreakerState.DISABLED: 0,
    BreakerState.HALF_OPEN: 1,
    BreakerState.OPEN: 2,
    BreakerState.FORCED_OPEN: 2,
}

StateListener = Callable[[StateChange], None]
"""A callback told about every state change."""


def emit_state_change(change: StateChange, listeners: Iterable[StateListener]) -> None:
    """Report ``change`` to telemetry, the audit log and every listener."""
    breaker_transitions.add(1, {"breaker": change.breaker, "state": change.current.value})
    breaker_state.set(_GAUGE_VALUE[change.current], {"breaker": change.breaker})
    audit(
        AuditEventType.BREAKER_STATE,
        change.current.value,
        reason=change.reason,
        details={
            "breaker": change.breaker,
            "previous": change.previous.value,
            "failure_rate": change.failure_rate,
            "slow_call_rate": change.slow_call_rate,
            "shared": change.shared,
        },
    )
    for listener in listeners:
        try:
            listener(change)
        except Exception:
            _logger.exception("breaker_listener_failed", breaker=change.breaker)
