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

In Redis a key also holds *reservations* (:func:`gcra_reserving`, the Python twin of the
script): each store that decides a key, with ``N`` live instances, keeps
``floor(left / N)`` of what is left for itself for a while, and no other store may take
reserved units. During an outage each instance spends only its own reservation, so the
fleet never spends more than was left (docs/ratelimit.md, "The fallback keeps the global
limit").
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = [
    "MAX_RESERVED",
    "GcraOutcome",
    "Reply",
    "Reservation",
    "ReservingOutcome",
    "Settled",
    "decode_reply",
    "gcra",
    "gcra_reserving",
    "reservation_expiry",
    "reservation_of",
    "reservation_value",
    "settle",
]


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


class Reservation(NamedTuple):
    """Units of a key one store holds for itself, until ``expiry_us`` (the store's clock)."""

    units: int
    expiry_us: int


MAX_RESERVED = 65535
"""Most units one reservation holds (they share one number with its expiry in Redis)."""


def reservation_expiry(now: int, reserve_us: int) -> int:
    """When a reservation made at ``now`` expires (rounded up: Redis keeps tenths of a second)."""
    return ((now + reserve_us) // 100_000 + 1) * 100_000


def reservation_value(reservation: Reservation) -> int:
    """A reservation as Redis keeps it: its expiry in tenths of a second × 65536 + units."""
    return reservation.expiry_us // 100_000 * 65536 + reservation.units


def reservation_of(value: int) -> Reservation:
    """The reservation :func:`reservation_value` gave ``value`` for."""
    return Reservation(value % 65536, value // 65536 * 100_000)


class ReservingOutcome(NamedTuple):
    """One decision with reservations, in units and integer microseconds.

    Attributes:
        allowed: Whether the units were granted.
        new_tat: The TAT to store (``None`` when refused: the TAT does not change).
        ahead_us: How far the key's TAT is ahead of now after the decision.
        reserved: Units reserved for the deciding store afterwards (0 when refused).
        retry_after_us: Wait before the same request would be admitted (0 when allowed).
        held: Units the other stores held (unavailable to this one).
        reservations: Every store's reservation after the decision, expired ones dropped.
    """

    allowed: bool
    new_tat: int | None
    ahead_us: int
    reserved: int
    retry_after_us: int
    held: int
    reservations: dict[str, Reservation]


def gcra_reserving(
    tat: int | None,
    reservations: dict[str, Reservation],
    now: int,
    emission_us: int,
    tolerance_us: int,
    *,
    cost: int,
    me: str,
    instances: int,
    reserve_us: int,
) -> ReservingOutcome:
    """Decide ``cost`` units for store ``me`` as ``gcra.lua`` does, with reservations.

    The units left after a decision are ``left = (tolerance - ahead) // emission``. The
    others' unexpired reservations add up to ``held``; the request is admitted only if
    ``left >= held`` after it, then ``me`` reserves
    ``max(0, min(left // instances, left - held, 65535))`` until ``now + reserve_us``
    (rounded up to a tenth of a second; nothing when ``instances <= 1``: its old
    reservation is dropped).

    Invariant: the unexpired reservations never add up to more than ``left``. Suppose
    they do not before a decision. A refusal changes neither the TAT nor a reservation
    (expired ones are dropped, which only lowers the sum). An admission lowers ``left``
    by ``cost`` to a value still at least ``held``, and sets this store's reservation to
    at most ``left - held``: the sum is at most ``left``. Between decisions time refills
    ``left`` and expires reservations; both keep it. So if every store spends its own
    reservation (an outage), together they spend at most what was left.
    """
    kept = {
        store: reservation
        for store, reservation in reservations.items()
        if reservation.expiry_us > now
    }
    ahead = tat - now if tat is not None and tat > now else 0
    after = ahead + emission_us * cost
    room = tolerance_us - after
    others = [reservation for store, reservation in kept.items() if store != me]
    held = sum(reservation.units for reservation in others)
    if room < held * emission_us:
        freed = max((reservation.expiry_us for reservation in others), default=0)
        wait = max(-room, freed - now)  # the reservations in the way expire
        if held * emission_us <= tolerance_us - emission_us * cost:  # refill can make room
            wait = min(wait, held * emission_us - room)
        return ReservingOutcome(False, None, ahead, 0, wait, held, kept)
    left = room // emission_us
    reserved = max(0, min(left // instances, left - held, MAX_RESERVED)) if instances > 1 else 0
    if reserved:
        kept[me] = Reservation(reserved, reservation_expiry(now, reserve_us))
    else:
        kept.pop(me, None)
    return ReservingOutcome(True, now + after, after, reserved, 0, held, kept)


class Reply(NamedTuple):
    """``gcra.lua``'s reply, decoded (see :func:`decode_reply`)."""

    allowed: bool
    ahead_us: int
    reserved: int
    """Units now reserved for the deciding store (0 when refused)."""
    retry_after_us: int
    """Wait before the same request would be admitted (0 when allowed)."""
    held: int
    """Units the other stores held."""


def decode_reply(reply: list[int]) -> Reply:
    """Decode ``gcra.lua``'s three integers.

    The first is ``ahead_us`` (at least 1) when the script admits and ``-1 - ahead_us``
    when it refuses, so one integer carries both facts; the second is the units reserved
    (admitted) or the wait (refused); the third the units the other stores held. A first
    integer of 0 is the script's "hold" (Redis lost its data, see ``gcra.lua``): nothing
    was admitted, and the second is the wait until the hold ends.
    """
    code, second, held = reply
    if code > 0:
        return Reply(True, code, second, 0, held)
    if code == 0:
        return Reply(False, 0, 0, second, held)
    return Reply(False, -1 - code, 0, second, held)
