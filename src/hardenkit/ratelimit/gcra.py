"""GCRA, the generic cell rate algorithm: one timestamp per key, smooth, with a burst.

Each key stores its *theoretical arrival time* (TAT): the instant at which its bucket
would be empty again if nothing else arrived. A request of ``cost`` units pushes the TAT
``cost × emission_interval`` further; it is admitted when the pushed TAT is no more than
``tolerance`` (``burst × emission_interval``) ahead of now. All values are integer
microseconds, so :func:`gcra` and ``gcra.lua`` (the same lines, run inside Redis) give
identical answers; ``tests/ratelimit/test_gcra_lua.py`` checks that with hypothesis.

Both stores reduce a decision to two facts, whether it was admitted and how far the TAT
is ahead of now afterwards (``ahead_us``); :func:`settle` derives everything a client is
told from those, so the memory store and the Redis store cannot drift apart there.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["GcraOutcome", "Settled", "decode_reply", "gcra", "settle"]


class GcraOutcome(NamedTuple):
    """One decision, in integer microseconds.

    Attributes:
        allowed: Whether the units were granted.
        new_tat: The TAT to store (``None`` when refused: nothing changes).
        ahead_us: How far the key's TAT is ahead of now after the decision (0 when its
            bucket is full).
    """

    allowed: bool
    new_tat: int | None
    ahead_us: int


class Settled(NamedTuple):
    """What a decision tells the client, in units and integer microseconds.

    Attributes:
        remaining: Units that could still be taken now, after this decision.
        retry_after_us: Wait before the same request would be admitted (0 when allowed).
        reset_after_us: Wait until the bucket is full again.
    """

    remaining: int
    retry_after_us: int
    reset_after_us: int


def gcra(tat: int | None, now: int, emission_us: int, tolerance_us: int, cost: int) -> GcraOutcome:
    """Decide one request of ``cost`` units against the stored ``tat`` at ``now``."""
    ahead = tat - now if tat is not None and tat > now else 0
    after = ahead + emission_us * cost
    if after > tolerance_us:
        return GcraOutcome(False, None, ahead)
    return GcraOutcome(True, now + after, after)


def settle(allowed: bool, ahead_us: int, emission_us: int, tolerance_us: int, cost: int) -> Settled:
    """Derive remaining units, retry-after and reset-after from one decision."""
    remaining = (tolerance_us - ahead_us) // emission_us
    if allowed:
        return Settled(remaining, 0, ahead_us)
    return Settled(remaining, ahead_us + emission_us * cost - tolerance_us, ahead_us)


def decode_reply(reply: int) -> tuple[bool, int]:
    """Return ``(allowed, ahead_us)`` from ``gcra.lua``'s one-integer reply.

    The script answers ``ahead_us`` (at least 1) when it admits and ``-1 - ahead_us``
    when it refuses, so one integer carries both facts.
    """
    if reply >= 0:
        return True, reply
    return False, -1 - reply
