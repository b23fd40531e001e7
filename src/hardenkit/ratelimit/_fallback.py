"""What a :class:`~.redis_store.RedisStore` answers while Redis is unavailable.

Three rules keep an outage from multiplying a limit across instances:

* **Seeded.** Every decision Redis makes is mirrored into this process's memory (the key's
  TAT as Redis left it), so a key exhausted in Redis is exhausted in the fallback too.
* **A share.** While Redis is unavailable an instance admits its share of what Redis last
  said was left: ``floor(remaining × share)``, and its share of the rate from then on
  (``share`` is ``1 / live instances`` with ``auto``). Rounded down because each view is a
  little stale (other instances admitted since), so the views add up to more than what is
  left; over ``N`` instances what was left is not exceeded by more than that staleness,
  and the rate by at most ``N`` for what refills.
* **Charged back.** What the fallback admitted is added to the keys in Redis (one script
  call per batch of keys) before Redis decides again, so recovery hands out no fresh quota.
  A key's TAT in Redis is also raised to what this instance last saw, so a Redis that
  comes back empty (restarted without persistence) does not forget an exhausted key.

A single call that timed out without the switch (see :class:`~hardenkit.stores.RedisGuard`)
is answered from the same seeded share, and settled like an outage: what it admitted is
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

from hardenkit.ratelimit.decision import RateLimitDecision
from hardenkit.ratelimit.gcra import decode_reply
from hardenkit.ratelimit.rate import Rate
from hardenkit.stores import store_key

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.cluster import RedisCluster

    from hardenkit.ratelimit.memory import MemoryStore

__all__ = ["OutageFallback", "Pending"]

CHARGE_SCRIPT: Final = """
local t = redis.call('TIME')
local now = t[1] * 1000000 + t[2]
local out = {}
for i, key in ipairs(KEYS) do
  local tat = tonumber(redis.call('GET', key))
  local floor = now + ARGV[2 * i - 1]
  if not tat or tat < floor then tat = floor end
  tat = tat + ARGV[2 * i]
  local ahead = tat - now
  if ahead > 0 then
    redis.call('SET', key, tat, 'PX', (ahead - ahead % 1000) / 1000 + 1)
  end
  out[i] = ahead
end
return out
"""
"""For each key, ARGV holds a pair: the least its TAT may be ahead of now (what this
instance last saw) and the increment (units × emission interval, microseconds). It raises
the TAT to the floor, adds the increment whatever the tolerance (what was admitted was
admitted), and answers how far each TAT is ahead of now afterwards."""

_CHARGE_BATCH: Final = 256
_CHARGE_PASSES: Final = 3


class OutageFallback:
    """The seeded, shared, charged-back memory fallback of one Redis store.

    Args:
        memory: Holds the TATs (mirrored from Redis, then this instance's own).
        share: Returns the fraction of each limit this instance may admit while Redis
            is unavailable (``1 / live instances``, a fixed fraction, or 1).
        settle: Called when keys decided outside an outage (single timed-out calls)
            are ready to be charged (see :meth:`charge` with ``ready_only``).
    """

    def __init__(
        self,
        memory: MemoryStore,
        share: Callable[[], float],
        settle: Callable[[], None] | None = None,
    ) -> None:
        self.memory = memory
        self._share = share
        self._settle = settle
        # Keys decided by this fallback and not yet charged, in this instance's share,
        # with the units admitted (to charge). Bounded like the memory store.
        self._outage: OrderedDict[str, _Outage] = OrderedDict()
        self._charging = asyncio.Lock()

    def mirror(self, key: str, ahead_us: int) -> None:
        """Remember what Redis just decided for ``key`` (its TAT is ``ahead_us`` ahead)."""
        if key not in self._outage:
            self.memory.set_tat(key, self.memory.now_us() + ahead_us)

    def decide(
        self,
        key: str,
        rate: Rate,
        cost: int,
        pending: Pending | None = None,
        in_flight: int = 0,
    ) -> RateLimitDecision:
        """Decide from memory, as this instance's share of what Redis last said was left.

        ``pending`` is the Redis call this decision replaces, when one was sent and
        given up on: its outcome, once known, says whether Redis counted it already.
        ``in_flight``: this instance's other calls for ``key`` still waiting on Redis,
        which tells how stale the view may be (see :func:`_seeded_ahead`).
        """
        entry = self._outage.get(key)
        memory = self.memory
        share = self._share()
        scaled = _scaled(rate, share)
        if entry is None:
            now = memory.now_us()
            last_seen = memory.tat(key)
            ahead = _seeded_ahead(last_seen, now, rate, scaled, share, in_flight=in_flight)
            memory.set_tat(key, now + ahead)
            entry = self._enter(key, _Outage(rate, 0, last_seen or 0))
            decision = memory.decide_now(key, scaled, cost, now)
        else:
            decision = memory.decide_now(key, scaled, cost)
        if decision.allowed:
            entry.units += cost
        if pending is None:
            if entry.open == 0 and self._settle is not None:
                self._settle()  # a no-op during an outage: recovery charges it
        else:
            pending.entry = entry
            if pending.redis_admitted is None:
                entry.open += 1
            else:
                self._resolved(pending, entry)
        return decision

    def resolve(self, pending: Pending, reply: Any) -> None:
        """Record what became of a call that was given up on (see :class:`Pending`)."""
        pending.redis_admitted = reply is not None and decode_reply(reply)[0]
        entry = pending.entry
        if entry is not None:
            entry.open -= 1
            self._resolved(pending, entry)

    def _resolved(self, pending: Pending, entry: _Outage) -> None:
        if pending.redis_admitted:
            entry.credit += pending.cost
        if entry.open == 0 and self._settle is not None and self._outage.get(pending.key) is entry:
            self._settle()

    def _enter(self, key: str, entry: _Outage) -> _Outage:
        outage = self._outage
        outage[key] = entry
        if len(outage) > self.memory.max_keys:  # a flood of keys: forget the oldest
            oldest, _ = outage.popitem(last=False)
            self.memory.forget(oldest)
        return entry

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
        refused are forgotten here (Redis decides them next time); keys that admitted
        are charged what Redis did not count itself, and mirrored from Redis's answer.
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
                charges = [
                    (
                        key,
                        max(0, entry.floor_tat - now),
                        max(0, units - credit) * entry.rate.emission_interval_us,
                    )
                    for key, entry, units, credit in taken
                    if units > credit or entry.floor_tat > now
                ]
                aheads = await _charge(client, key_prefix, charges)
                # No await from here to the end of the pass: decisions made meanwhile in
                # this process are still in _outage and go in the next pass.
                for key, entry, units, credit in taken:
                    entry.units -= units
                    entry.credit -= credit
                    entry.floor_tat = 0
                    if entry.units or entry.open or keep:
                        continue
                    if self._outage.get(key) is entry:
                        del self._outage[key]
                    ahead = aheads.get(key)
                    if ahead is None:
                        self.memory.forget(key)
                    else:
                        self.memory.set_tat(key, self.memory.now_us() + ahead)


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
    credit: int = 0
    """Units of given-up calls that Redis admitted itself: already counted there."""
    open: int = 0
    """Given-up calls of this key whose outcome is not known yet."""


Charge = tuple[str, int, int]
"""A key, the least its TAT may be ahead of now, and the increment, in microseconds."""


async def _charge(
    client: Redis | RedisCluster, key_prefix: str, charges: list[Charge]
) -> dict[str, int]:
    aheads: dict[str, int] = {}
    for group in _by_slot(client, key_prefix, charges):
        for start in range(0, len(group), _CHARGE_BATCH):
            batch = group[start : start + _CHARGE_BATCH]
            keys = [store_key(key_prefix, key) for key, _, _ in batch]
            arguments = [value for _, floor, increment in batch for value in (floor, increment)]
            reply: Any = await client.eval(CHARGE_SCRIPT, len(keys), *keys, *arguments)
            aheads.update(
                (key, int(ahead)) for (key, _, _), ahead in zip(batch, reply, strict=True)
            )
    return aheads


def _by_slot(client: object, key_prefix: str, charges: list[Charge]) -> list[list[Charge]]:
    """One group on a standalone Redis; one per hash slot on a Cluster.

    A script's keys must share a slot on a Cluster.
    """
    keyslot = getattr(client, "keyslot", None)
    if keyslot is None:
        return [charges] if charges else []
    groups: dict[int, list[Charge]] = {}
    for charge in charges:
        groups.setdefault(keyslot(store_key(key_prefix, charge[0])), []).append(charge)
    return list(groups.values())


def _seeded_ahead(
    tat: int | None, now: int, rate: Rate, scaled: Rate, share: float, *, in_flight: int = 0
) -> int:
    """How far ahead the key's TAT starts in the share: what Redis left, times the share.

    What Redis left is this instance's view after its own last decision; the other
    instances went on deciding meanwhile. Behind a load balancer each had about as many
    calls for the key in flight as this one has (``in_flight``), so that many per other
    instance are taken off what was left before the share is cut: a hot key starts its
    outage with less, a quiet one (nothing in flight) with its whole share.
    """
    ahead = tat - now if tat is not None and tat > now else 0
    remaining = max(0, (rate.tolerance_us - ahead) // rate.emission_interval_us)
    if in_flight and share < 1:
        remaining = max(0, remaining - math.ceil(in_flight * (1 / share - 1)))
    units = min(scaled.burst, math.floor(remaining * share))
    return scaled.tolerance_us - units * scaled.emission_interval_us


@functools.lru_cache(maxsize=256)
def _scaled(rate: Rate, share: float) -> Rate:
    """``rate`` times ``share``, rounded up (count and burst at least 1)."""
    if share >= 1:
        return rate
    try:
        return Rate(
            math.ceil(rate.count * share), rate.period_seconds, math.ceil(rate.burst * share)
        )
    except ValueError:  # rounding pushed an extreme rate past its bounds: keep it whole
        return rate
