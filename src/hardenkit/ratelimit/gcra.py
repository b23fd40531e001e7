"""GCRA, the generic cell rate algorithm: one timestamp per key, smooth, with a burst.

Each key stores its *theoretical arrival time* (TAT): the instant at which its bucket
would be empty again if nothing else arrived. A request of ``cost`` units pushes the TAT
``cost × emission_interval`` further; it is admitted when the pushed TAT is no more than
``tolerance`` (``burst × emission_interval``) ahead of now. All values are integer
microseconds, so this function and ``gcra.lua`` (the same lines, run inside Redis) give
identical answers; ``tests/ratelimit/test_gcra_lua.py`` checks that with hypothesis.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["GcraOutcome", "gcra"]


class GcraOutcome(NamedTuple):
    """One decision, in integer microseconds.

    Attributes:
        allowed: Whether the units were granted.
        new_tat: The TAT to store (``None`` when refused: nothing changes).
        remaining: Units that could still be taken now, after this decision.
        retry_after_us: Wait before the same request would be admitted (0 when allowed).
        reset_after_us: Wait until the bucket is full again.
    """

    allowed: bool
    new_tat: int | None
    remaining: int
    retry_after_us: int
    reset_after_us: int


def gcra(tat: int | None, now: int, emission_us: int, tolerance_us: int, cost: int) -> GcraOutcome:
    """Decide one request of ``cost`` units against the stored ``tat`` at ``now``."""
    if tat is None or tat < now:
        tat = now
    new_tat = tat + emission_us * cost
    allow_at = new_tat - tolerance_us
    if now < allow_at:
        return GcraOutcome(
            False, None, (tolerance_us - (tat - now)) // emission_us, allow_at - now, tat - now
        )
    ahead = new_tat - now
    return GcraOutcome(True, new_tat, (tolerance_us - ahead) // emission_us, 0, ahead)
