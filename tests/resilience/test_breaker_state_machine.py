"""The breaker against a small reference model of Resilience4j's state machine.

Hypothesis drives both with random successes, failures, slow calls, ignored calls and
clock advances, under random configurations, and checks after every step that they agree
on the state, on every permission and on the remaining wait.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from hardenkit.resilience import BreakerState, CircuitBreaker, CircuitOpenError
from tests.resilience.conftest import FakeClock

SLOW_CALL_DURATION = 1.0


@dataclass
class Model:
    """The state machine written the plainest way: lists, recomputed every time."""

    window: str
    size: int
    minimum: int
    failure_threshold: float
    slow_threshold: float
    permitted: int
    wait: float
    multiplier: float
    max_wait: float | None
    now: float = 1000.0
    state: str = "closed"
    outcomes: list[tuple[float, bool, bool]] = field(default_factory=list)
    trials: list[tuple[bool, bool]] = field(default_factory=list)
    trials_left: int = 0
    open_until: float = 0.0
    opens: int = 0

    def visible(self) -> list[tuple[float, bool, bool]]:
        if self.window == "count":
            return self.outcomes[-self.size :]
        current = math.floor(self.now)
        return [o for o in self.outcomes if math.floor(o[0]) > current - self.size]

    def observe(self) -> str:
        if self.state == "open" and self.now >= self.open_until:
            self.state = "half_open"
            self.trials_left = self.permitted
            self.trials = []
        return self.state

    def acquire(self) -> bool:
        state = self.observe()
        if state == "closed":
            return True
        if state == "half_open" and self.trials_left > 0:
            self.trials_left -= 1
            return True
        return False

    def release(self) -> None:
        if self.state == "half_open":
            self.trials_left += 1

    def record(self, failed: bool, slow: bool) -> None:
        if self.state == "closed":
            self.outcomes.append((self.now, failed, slow))
            seen = self.visible()
            if len(seen) >= self.minimum and any(f or s for _, f, s in seen):
                self.judge(sum(f for _, f, _ in seen), sum(s for _, _, s in seen), len(seen))
        elif self.state == "half_open":
            self.trials.append((failed, slow))
            if len(self.trials) >= self.permitted:
                failed_count = sum(f for f, _ in self.trials)
                slow_count = sum(s for _, s in self.trials)
                if not self.judge(failed_count, slow_count, len(self.trials)):
                    self.state = "closed"
                    self.opens = 0
                    self.outcomes = []

    def judge(self, failed: int, slow: int, total: int) -> bool:
        if failed * 100.0 / total >= self.failure_threshold or (
            slow * 100.0 / total >= self.slow_threshold
        ):
            self.opens += 1
            wait = self.wait * self.multiplier ** (self.opens - 1)
            if self.max_wait is not None:
                wait = min(wait, self.max_wait)
            self.open_until = self.now + wait
            self.state = "open"
            self.outcomes = []
            return True
        return False


class BreakerMachine(RuleBasedStateMachine):
    clock: FakeClock
    breaker: CircuitBreaker
    model: Model

    @initialize(
        window=st.sampled_from(["count", "time"]),
        size=st.integers(1, 8),
        minimum=st.integers(1, 6),
        failure_threshold=st.sampled_from([25.0, 50.0, 100.0]),
        slow_threshold=st.sampled_from([50.0, 100.0]),
        permitted=st.integers(1, 3),
        wait=st.sampled_from([1.0, 5.0, 30.0]),
        multiplier=st.sampled_from([1.0, 2.0]),
        max_wait=st.sampled_from([None, 40.0]),
    )
    def configure(  # noqa: PLR0917 - hypothesis passes every drawn value
        self,
        window: str,
        size: int,
        minimum: int,
        failure_threshold: float,
        slow_threshold: float,
        permitted: int,
        wait: float,
        multiplier: float,
        max_wait: float | None,
    ) -> None:
        self.clock = FakeClock()
        self.in_flight: list[bool] = []
        self.breaker = CircuitBreaker(
            "model",
            window=window,  # type: ignore[arg-type]
            window_size=size,
            minimum_calls=minimum,
            failure_rate_threshold=failure_threshold,
            slow_call_duration=SLOW_CALL_DURATION,
            slow_call_rate_threshold=slow_threshold,
            permitted_calls_in_half_open=permitted,
            wait_in_open=wait,
            wait_multiplier=multiplier,
            max_wait_in_open=max_wait,
            clock=self.clock,
        )
        self.model = Model(
            window,
            size,
            minimum,
            failure_threshold,
            slow_threshold,
            permitted,
            wait,
            multiplier,
            max_wait,
            now=self.clock.now,
        )

    def _permitted(self) -> bool:
        expected = self.model.acquire()
        refused: CircuitOpenError | None = None
        try:
            self.breaker.acquire()
        except CircuitOpenError as error:
            refused = error
        if refused is not None:
            assert not expected, "breaker refused a call the model allowed"
            if self.model.state == "open":
                assert refused.remaining_wait == self.model.open_until - self.model.now
            return False
        assert expected, "breaker allowed a call the model refused"
        return True

    @rule(failed=st.booleans(), slow=st.booleans())
    def call(self, failed: bool, slow: bool) -> None:
        if self._permitted():
            duration = SLOW_CALL_DURATION * 2 if slow else SLOW_CALL_DURATION / 10
            if failed:
                self.breaker.record_failure(duration)
            else:
                self.breaker.record_success(duration)
            self.model.record(failed, slow)

    @rule()
    def begin_call(self) -> None:
        """A call that is still in flight while other calls start and end."""
        if self._permitted():
            self.in_flight.append(True)

    @rule(failed=st.booleans(), slow=st.booleans())
    def end_call(self, failed: bool, slow: bool) -> None:
        if self.in_flight:
            self.in_flight.pop()
            self.breaker.record_flags(failed, slow)
            self.model.record(failed, slow)

    @rule()
    def ignored_call(self) -> None:
        if self._permitted():
            self.breaker.release()
            self.model.release()

    @rule(
        seconds=st.one_of(
            st.sampled_from([0.5, 1.0, 5.0, 30.0]),
            st.integers(1, 9).map(float),
            st.floats(0, 45),
        )
    )
    def time_passes(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.model.now = self.clock.now

    @invariant()
    def same_state(self) -> None:
        if hasattr(self, "model"):
            assert self.breaker.state == BreakerState(self.model.observe())
            expected_wait = (
                max(0.0, self.model.open_until - self.model.now)
                if self.model.state == "open"
                else 0.0
            )
            assert self.breaker.remaining_wait() == expected_wait


BreakerMachine.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_breaker_matches_the_reference_state_machine = BreakerMachine.TestCase
