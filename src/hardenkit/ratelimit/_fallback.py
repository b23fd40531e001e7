"""What a :class:`~hardenkit.ratelimit.redis_store.RedisStore` answers while Redis is unavailable.

Three rules keep an outage from multiplying a limit across instances:

* **Reserved.** Every decision Redis makes for a key also reserves, in Redis, this
  instance's part of what is left (``floor(left / N)`` with ``N`` live instances, see
  :func:`~hardenkit.ratelimit.gcra.gcra_reserving`) for ``reserve`` seconds; no other
  instance may take reserved units, and the reservations never add up to more than is
  left. This process mirrors its reservation and when it expires (the time the call was
  *sent* plus ``reserve``: never later than Redis's own expiry). When an outage starts (or
  one call times out), a key's share starts with that reservation if it is still valid,
  less the units of this instance's other calls for the key still waiting on Redis
  (Redis may yet admit them out of the same reservation), else empty: a key this
  instance never decided, or not within ``reserve`` seconds, gets only its ``1 / N``
  share of what refills. A reservation that expires during the outage is dropped (the
  bucket is emptied): the other instances may take its units in Redis by then, if only
  this instance is cut off. So the fleet spends at most what was left, plus what refills
  (at most ``N`` more per window: the shares' rates are rounded up). A lone instance
  (``N = 1``) reserves nothing and starts from what Redis last told it was left (less
  its calls in flight): no other instance decides the key.
  With a fixed share (``HARDENKIT_RATE_LIMIT_FALLBACK_SHARE`` a number) nothing is
  reserved: the share starts from ``floor(left × share)`` of what Redis last told this
  instance was left, which other instances may have taken since. Both start a key
  without a view from the memory store's estimate when it dropped keys still limiting
  (more keys than ``max_keys`` in a window): a full bucket would give its limit again.
* **Charged back.** What the fallback admitted is added to the keys in Redis (one script
  call per batch of keys) before Redis decides again, and taken off this instance's
  reservation there. A key that Redis lost (restarted without persistence) is restored
  from the TAT this instance last saw, and remembers that floor (its *restore base*): a
  later charge adds only what its floor is above the base, so the key ends at the
  freshest view plus every charge, whatever order the charges arrive in.
* **Held until charged.** While a key has admissions not yet charged, this instance keeps
  deciding it from its share (:meth:`OutageFallback.holds`): Redis would otherwise give it
  its reservation a second time. Such a key is never forgotten to make room (a flood of
  keys): only keys with nothing to charge are; when none can go, a new key is left to
  Redis (:meth:`OutageFallback.decide` answers ``None``: unavailable), as is a cost above
  the share's burst, which the share could never admit.
* **Restored.** The recovery probe, and a heartbeat that finds itself gone from Redis,
  send every key this instance mirrored whose TAT is still ahead (``_restores``): a
  key Redis lost comes back at the highest view; a key Redis kept is not written.

A single call that timed out without the switch (see :class:`~hardenkit.stores.RedisGuard`)
is answered from the same share, and settled like an outage: what it admitted is
charged back unless Redis is seen to have admitted that very call itself. A timed-out
call may still run in Redis (a late reply on a busy host) or never run (a paused Redis
drops a call whose connection closed): the runner reports the reply of a call whose
caller gave up, or that none will come, and only a reply that admitted counts as
already charged. Settled in the background once every such call of the key is known.
"""

from __future__ import annotations

import asyncio
import functools
import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import structlog

from hardenkit._ttlmap import TTLMap
from hardenkit.ratelimit._charge import MIN_SLACK_US, Charge, charge_keys
from hardenkit.ratelimit.decision import RateLimitDecision, decision_from_gcra
from hardenkit.ratelimit.gcra import Reservation, decode_reply, gcra
from hardenkit.ratelimit.rate import MAX_TOLERANCE_US, Rate

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.cluster import RedisCluster

    from hardenkit.ratelimit.memory import MemoryStore

__all__ = ["OutageFallback", "Pending"]

_CHARGE_PASSES: Final = 3

_logger = structlog.get_logger("hardenkit.ratelimit")


class OutageFallback:
    """The reserved, shared, charged-back memory fallback of one Redis store.

    Args:
        memory: Holds the TATs (mirrored from Redis, then this instance's own).
        share: Returns the fraction of each limit this instance may admit while Redis
            is unavailable (``1 / live instances``, a fixed fraction, or 1).
        settle: Called when keys decided outside an outage (single timed-out calls)
            are ready to be charged (see :meth:`charge` with ``ready_only``).
        member: The store's id in the keys' reservations.
        reserve_us: How long a reservation holds, in microseconds; ``None``: the store
            reserves nothing (a fixed share) and a share starts from the last view.
    """

    def __init__(
        self,
        memory: MemoryStore,
        share: Callable[[], float],
        settle: Callable[[], None] | None = None,
        *,
        member: str = "",
        reserve_us: int | None = None,
    ) -> None:
        self.memory = memory
        self._share = share
        self._settle = settle
        self.member = member
        self.reserve_us = reserve_us
        self.slotted = False
        """Whether Redis enforces hash slots behind a plain client: one slot per charge call."""
        # Keys decided by this fallback and not yet charged, in this instance's share,
        # with the units admitted (to charge). Bounded like the memory store; only entries
        # with nothing to charge (``_idle``, oldest first) make room for a new key.
        self._outage: OrderedDict[str, _Outage] = OrderedDict()
        self._idle: OrderedDict[str, None] = OrderedDict()
        self.refused_full = 0
        """New keys refused because every entry still has something to charge."""
        self.estimated_views = 0
        """Keys whose share started from an estimate: no view, dropped keys in its slot."""
        # This store's reservation per key, as Redis last answered it, until it expires
        # by this process's clock (microseconds).
        self._reserved: TTLMap[str, Reservation] = TTLMap(memory.max_keys, memory.now_us)
        self._charged_from = -1  # calls sent before a charge began carry stale reservations
        self._charging = asyncio.Lock()

    def holds(self, key: str) -> bool:
        """Whether ``key`` has admissions not charged yet: its share decides it until then.

        Redis does not know them yet, and still holds this instance's reservation: let
        Redis decide and it would give the same units a second time.
        """
        return key in self._outage

    def mirror(self, key: str, ahead_us: int, reserved: int | None, sent_us: int) -> None:
        """Remember what Redis decided for ``key`` in a call sent at ``sent_us``.

        ``ahead_us``: its TAT is that far ahead of now. ``reserved``: the units Redis now
        reserves for this store (``None``: a refusal, which leaves the reservation as
        it was). The reservation is kept until ``sent_us + reserve``: Redis set its own
        expiry later than that, when it ran the call.
        """
        if key in self._outage:
            return
        # From the sending: Redis ran the call later, so this is never after its TAT (a
        # floor restored from it must not raise a key Redis kept).
        self.memory.set_tat(key, sent_us + ahead_us)
        if reserved is None:
            return
        if reserved and self.reserve_us is not None and sent_us > self._charged_from:
            expiry = sent_us + self.reserve_us
            self._reserved.put_until(key, Reservation(reserved, expiry), expiry)
        else:
            self._reserved.pop(key)

    def seen(self, key: str, ahead_us: int, sent_us: int) -> None:
        """Raise ``key``'s view to what Redis holds, told by a held call (``gcra.lua``).

        A share that starts during the hold starts from it: a key another instance has
        already restored is not a full bucket for an instance that never saw it.
        """
        if not ahead_us or key in self._outage:
            return
        tat = sent_us + ahead_us  # from the sending: never after what Redis holds
        view = self.memory.tat(key)
        if view is None or tat > view:
            self.memory.set_tat(key, tat)

    def decide(
        self,
        key: str,
        rate: Rate,
        cost: int,
        pending: Pending | None = None,
        in_flight: int = 0,
    ) -> RateLimitDecision | None:
        """Decide from memory, as this instance's share (see the module's docstring).

        ``pending`` is the Redis call this decision replaces, when one was sent and
        given up on: its outcome, once known, says whether Redis counted it already.
        ``in_flight``: units of this instance's other calls for ``key`` still waiting on
        Redis. Redis may yet admit them, out of this very reservation (or view), so a
        share that starts now leaves them out.

        ``None``: the share cannot decide it, only Redis can (the caller answers as
        unavailable). A cost above the share's burst would never be admitted by the
        share, yet Redis may admit it; and a new key finds no room while every key
        already decided here still has admissions to charge (forgetting one would
        leave them uncharged).
        """
        entry = self._outage.get(key)
        memory = self.memory
        share = self._share()
        scaled = _scaled(rate, share)
        if scaled.burst < cost <= rate.burst:
            return None
        now = memory.now_us()
        if entry is None:
            if not self._room():
                return None
            entry = self._start(key, rate, scaled, share=share, now=now, in_flight=in_flight)
        elif entry.reserved_until is not None and now >= entry.reserved_until:
            # The reservation expired: in Redis the other instances may take its units
            # now. What is left of it goes; the bucket refills from empty at the expiry.
            entry.tat = max(entry.tat, entry.reserved_until + scaled.tolerance_us)
            entry.reserved_until = None
        self._outage.move_to_end(key)
        # The entry keeps its own TAT: the memory store's LRU (mirrors, a flood of keys)
        # must not forget a key this share decided.
        outcome = gcra(entry.tat, now, scaled.emission_interval_us, scaled.tolerance_us, cost)
        if outcome.new_tat is not None:
            entry.tat = outcome.new_tat
            entry.units += cost
        decision = decision_from_gcra(
            scaled, cost, allowed=outcome.allowed, ahead_us=outcome.ahead_us, backend="memory"
        )
        if pending is None:
            if entry.open == 0 and self._settle is not None:
                self._settle()  # a no-op during an outage: recovery charges it
        else:
            pending.entry = entry
            if pending.redis_admitted is None:
                entry.open += 1
            else:
                self._resolved(pending, entry)
        self._mark(key, entry)
        return decision

    def _start(
        self, key: str, rate: Rate, scaled: Rate, *, share: float, now: int, in_flight: int
    ) -> _Outage:
        """Enter ``key``: its share starts from the reservation, or the view (module doc)."""
        memory = self.memory
        last_seen = memory.tat(key)
        until: int | None = None
        view = last_seen
        if view is None and (self.reserve_us is None or share >= 1):
            # No view: the memory store may have dropped this key while it was still
            # limiting (more keys than max_keys). A full bucket would hand its limit out
            # again; its slot's estimate is never below what it had.
            view = memory.forgotten_tat(key, now)
            if view is not None:
                self._estimated()
        if self.reserve_us is None:  # a fixed share: the view, as it is
            units = _view_share(view, now, rate, scaled, share)
        elif share >= 1:  # no one else decides the key: the view, less what is in flight
            units = max(0, _view_share(view, now, rate, scaled, share) - in_flight)
        else:
            reservation = self._reserved.get(key)
            self._reserved.pop(key)  # spent here; Redis learns it from the charge
            held = 0 if reservation is None else reservation.units
            units = max(0, min(scaled.burst, held - in_flight))
            until = None if reservation is None else reservation.expiry_us
        start = now + scaled.tolerance_us - units * scaled.emission_interval_us
        entry = _Outage(rate, 0, last_seen or 0, start, reserved_until=until)
        self._outage[key] = entry
        return entry

    def _estimated(self) -> None:
        self.estimated_views += 1
        if self.estimated_views & (self.estimated_views - 1) == 0:  # 1, 2, 4, 8...
            _logger.warning(
                "ratelimit_fallback_key_view_estimated",
                detail="the memory store dropped keys that were still limiting, so a key "
                "without a view may be one of them: its share starts from the latest "
                "state of the dropped keys that share its slot",
                estimated_views=self.estimated_views,
                max_keys=self.memory.max_keys,
                setting="HARDENKIT_RATE_LIMIT_MEMORY_MAX_KEYS",
            )

    def resolve(self, pending: Pending, reply: Any) -> None:
        """Record what became of a call that was given up on (see :class:`Pending`)."""
        pending.redis_admitted = reply is not None and decode_reply(reply).allowed
        entry = pending.entry
        if entry is not None:
            entry.open -= 1
            self._mark(pending.key, entry)
            self._resolved(pending, entry)

    def _resolved(self, pending: Pending, entry: _Outage) -> None:
        if pending.redis_admitted:
            entry.credit += pending.cost
        if entry.open == 0 and self._settle is not None and self._outage.get(pending.key) is entry:
            self._settle()

    def _room(self) -> bool:
        """Make room for one more key (bounded like the memory store), if it can be made.

        Only a key with nothing left to charge goes (no units, no call of unknown
        outcome): it refused everything, or was charged already. A key that admitted
        stays until charged, whatever the flood.
        """
        if len(self._outage) < self.memory.max_keys:
            return True
        if self._idle:
            oldest, _ = self._idle.popitem(last=False)
            del self._outage[oldest]
            return True
        self.refused_full += 1
        if self.refused_full & (self.refused_full - 1) == 0:  # 1, 2, 4, 8...
            _logger.warning(
                "ratelimit_fallback_full",
                max_keys=self.memory.max_keys,
                refused_keys=self.refused_full,
                setting="HARDENKIT_RATE_LIMIT_MEMORY_MAX_KEYS",
            )
        return False

    def _mark(self, key: str, entry: _Outage) -> None:
        """Keep ``_idle`` in step: the keys that could be forgotten without losing a charge."""
        if entry.units == 0 and entry.open == 0 and self._outage.get(key) is entry:
            self._idle[key] = None
            self._idle.move_to_end(key)
        else:
            self._idle.pop(key, None)

    @property
    def pending_keys(self) -> int:
        """Keys decided by this fallback and not yet charged to Redis."""
        return len(self._outage)

    @property
    def ready_keys(self) -> int:
        """Pending keys whose given-up calls all have a known outcome."""
        return sum(1 for entry in self._outage.values() if entry.open == 0)

    async def charge(
        self,
        client: Redis | RedisCluster,
        key_prefix: str,
        *,
        ready_only: bool = False,
        keep: bool = False,
    ) -> None:
        """Charge what this fallback admitted to Redis, then let Redis decide again.

        Runs as the guard's first probe after an outage (``keep``: every key stays in
        this instance's share until the guard is back on Redis, as a later probe may
        still fail, and a key let go of now would start a fresh share), and in the
        background after single timed-out calls and after recovery (``ready_only``:
        only keys whose given-up calls all have a known outcome). Keys that only
        refused leave the share here (Redis decides them next time, and their view
        stays); keys that admitted are charged what Redis did not count itself, and
        mirrored from Redis's answer. Each batch counts as charged as soon as Redis
        answers it: a charge cut short (the probe's time is up) leaves only the rest
        for the next one, so nothing is charged twice and nothing is dropped.
        """
        async with self._charging:  # one charge at a time: each unit is charged once
            for _ in range(_CHARGE_PASSES):
                taken = [
                    (key, entry, entry.units, entry.credit)
                    for key, entry in self._outage.items()
                    if not ready_only or entry.open == 0
                ]
                if not taken:
                    return
                now = self.memory.now_us()
                self._charged_from = now
                charges = [
                    Charge(
                        key,
                        max(0, entry.floor_tat - now),
                        max(0, units - credit) * entry.rate.emission_interval_us,
                        units,
                        max(MIN_SLACK_US, entry.rate.emission_interval_us),
                    )
                    for key, entry, units, credit in taken
                    if units > credit or entry.floor_tat > now
                ]
                landed: dict[str, int] = {}
                try:
                    await charge_keys(
                        client,
                        key_prefix,
                        self.member,
                        charges,
                        clock=self.memory.now_us,
                        measured_us=now,
                        slotted=self.slotted,
                        into=landed,
                    )
                finally:
                    # No await here: decisions made meanwhile in this process are still
                    # in _outage and go in the next pass.
                    self._charged(taken, {charge.key for charge in charges}, landed, keep)

    def _charged(
        self,
        taken: list[tuple[str, _Outage, int, int]],
        sent: set[str],
        landed: dict[str, int],
        keep: bool,
    ) -> None:
        """Take what Redis counted off each key's entry; let go of the keys it settled.

        A key sent whose batch got no answer (``sent`` but not ``landed``) keeps all of
        it, for the next charge.
        """
        for key, entry, units, credit in taken:
            if key in sent and key not in landed:
                continue
            entry.units -= units
            entry.credit -= credit
            entry.floor_tat = 0
            self._mark(key, entry)
            if entry.units or entry.open or keep:
                continue
            if self._outage.get(key) is entry:
                del self._outage[key]
                self._idle.pop(key, None)
            ahead = landed.get(key)
            if ahead is not None:
                self.memory.set_tat(key, self.memory.now_us() + ahead)
            # Else the view stays the last one Redis gave: a share that starts
            # from it again (a later outage, a hold) must not find a full bucket.

    def _restores(self, now: int) -> list[Charge]:
        """Every key this instance mirrored whose TAT is still ahead: restored if Redis lost it.

        A Redis restarted empty would otherwise hand out a fresh limit for every key
        nobody decided during the outage. Whichever instance saw a key last brings its
        state back (the charge script raises a restored key to the highest floor). A key
        Redis still has is not written. At most ``max_keys`` keys (the memory store's
        bound), 256 per script call.
        """
        outage = self._outage
        return [
            Charge(key, tat - now, 0, 0, MIN_SLACK_US)
            for key, tat in self.memory.ahead_of(now)
            if key not in outage
        ]

    async def restore(self, client: Redis | RedisCluster, key_prefix: str) -> None:
        """Restore the keys this instance mirrored, if Redis lost them (:meth:`_restores`).

        Not one at a time with :meth:`charge` (a restore of many keys takes seconds, and
        the recovery probe's charge must not wait for it): a restore charges no unit, and
        only raises a key Redis lost to the floor this instance saw, which a charge of
        the same key does as well.
        """
        now = self.memory.now_us()
        await charge_keys(
            client,
            key_prefix,
            self.member,
            self._restores(now),
            clock=self.memory.now_us,
            measured_us=now,
            slotted=self.slotted,
        )


@dataclass(slots=True)
class Pending:
    """A Redis call given up on (timed out), whose decision the fallback made instead.

    Redis may still run it (a late reply) or never (its connection closed first). The
    script runner calls :meth:`OutageFallback.resolve` with its reply, or ``None`` when
    none will come; only a reply that admitted counts as charged.
    """

    key: str
    cost: int
    fallback: OutageFallback
    redis_admitted: bool | None = None
    """Whether Redis admitted the call itself; ``None`` until known."""
    entry: _Outage | None = None
    """The fallback's entry for the key, once it decided."""

    def __call__(self, reply: Any) -> None:
        self.fallback.resolve(self, reply)


@dataclass(slots=True)
class _Outage:
    """A key decided by the fallback during the current outage."""

    rate: Rate
    units: int
    """Units admitted, to charge."""
    floor_tat: int
    """The full-rate TAT last seen in Redis (the store's clock), restored if Redis lost it."""
    tat: int
    """The share's TAT (the store's clock)."""
    credit: int = 0
    """Units of given-up calls that Redis admitted itself: already counted there."""
    open: int = 0
    """Given-up calls of this key whose outcome is not known yet."""
    reserved_until: int | None = None
    """When the reservation this share started with expires (the store's clock)."""


def _view_share(tat: int | None, now: int, rate: Rate, scaled: Rate, share: float) -> int:
    """Units a fixed share starts with: ``floor(left × share)`` of what Redis last said.

    What Redis left is this instance's view after its own last decision; the other
    instances may have gone on deciding since, so the views of a fleet add up to more
    than is left (the accepted risk of a fixed share).
    """
    ahead = tat - now if tat is not None and tat > now else 0
    remaining = max(0, (rate.tolerance_us - ahead) // rate.emission_interval_us)
    return min(scaled.burst, math.floor(remaining * share))


@functools.lru_cache(maxsize=256)
def _scaled(rate: Rate, share: float) -> Rate:
    """``rate`` times ``share``, rounded up (count and burst at least 1)."""
    if share >= 1:
        return rate
    count = math.ceil(rate.count * share)
    burst = math.ceil(rate.burst * share)
    emission = Rate(count, rate.period_seconds, 1).emission_interval_us  # always valid
    # Rounding up may push an extreme rate's burst past 366 days of refill: then the
    # largest burst that fits, smaller than the share's (it never admits more).
    return Rate(count, rate.period_seconds, min(burst, max(1, MAX_TOLERANCE_US // emission)))
