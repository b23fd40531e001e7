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
is answered from the same seeded share; what it admits is counted in the mirror until
Redis answers for the key again, but not charged back, as Redis most likely ran that call
itself.
"""

from __future__ import annotations

import functools
import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from hardenkit.ratelimit.decision import RateLimitDecision, decision_from_gcra
from hardenkit.ratelimit.gcra import gcra
from hardenkit.ratelimit.rate import Rate

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.cluster import RedisCluster

    from hardenkit.ratelimit.memory import MemoryStore

__all__ = ["OutageFallback"]

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
instance last saw) and the increment (units admitted × emission interval, microseconds).
It raises the TAT to the floor, adds the increment whatever the tolerance (what was
admitted was admitted), and answers how far each TAT is ahead of now afterwards."""

_CHARGE_BATCH: Final = 256
_CHARGE_PASSES: Final = 3


class OutageFallback:
    """The seeded, shared, charged-back memory fallback of one Redis store.

    Args:
        memory: Holds the TATs (mirrored from Redis, then this instance's own).
        share: Returns the fraction of each limit this instance may admit while Redis
            is unavailable (``1 / live instances``, a fixed fraction, or 1).
    """

    def __init__(self, memory: MemoryStore, share: Callable[[], float]) -> None:
        self.memory = memory
        self._share = share
        # Keys decided during this outage, in this instance's share, with the units
        # admitted (to charge back). Bounded like the memory store.
        # The full-rate TAT seen last in Redis is kept as the floor to restore.
        self._outage: OrderedDict[str, _Outage] = OrderedDict()

    def mirror(self, key: str, ahead_us: int) -> None:
        """Remember what Redis just decided for ``key`` (its TAT is ``ahead_us`` ahead)."""
        if key not in self._outage:
            self.memory.set_tat(key, self.memory.now_us() + ahead_us)

    def decide(self, key: str, rate: Rate, cost: int, *, outage: bool) -> RateLimitDecision:
        """Decide from memory: during an outage as this instance's share, else read-only."""
        share = self._share()
        scaled = _scaled(rate, share)
        memory = self.memory
        if key in self._outage:
            decision = memory.decide_now(key, scaled, cost)
        else:
            now = memory.now_us()
            last_seen = memory.tat(key)
            seeded = now + _seeded_ahead(last_seen, now, rate, scaled, share)
            if outage:
                memory.set_tat(key, seeded)
                self._enter(key, _Outage(rate, 0, last_seen or 0))
                decision = memory.decide_now(key, scaled, cost, now)
            else:
                outcome = gcra(seeded, now, scaled.emission_interval_us, scaled.tolerance_us, cost)
                if outcome.allowed:  # counted here until Redis answers for the key again
                    full_tat = max(last_seen or now, now) + cost * rate.emission_interval_us
                    memory.set_tat(key, full_tat)
                return decision_from_gcra(
                    scaled,
                    cost,
                    allowed=outcome.allowed,
                    ahead_us=outcome.ahead_us,
                    backend="memory",
                )
        if decision.allowed:
            self._outage[key].units += cost
        return decision

    def _enter(self, key: str, entry: _Outage) -> None:
        outage = self._outage
        outage[key] = entry
        if len(outage) > self.memory.max_keys:  # a flood of keys: forget the oldest
            oldest, _ = outage.popitem(last=False)
            self.memory.forget(oldest)

    @property
    def pending_keys(self) -> int:
        """Keys decided by this fallback during the current outage."""
        return len(self._outage)

    async def charge(self, client: Redis | RedisCluster, key_prefix: str) -> None:
        """Charge what this outage admitted to Redis, then let Redis decide again.

        Runs as the guard's last probe, so calls go back to Redis only after it. Keys
        that only refused are forgotten here (Redis decides them next time); keys that
        admitted are charged and mirrored from Redis's answer.
        """
        for _ in range(_CHARGE_PASSES):
            if not self._outage:
                return
            now = self.memory.now_us()
            taken = [(key, entry, entry.units) for key, entry in self._outage.items()]
            to_charge = [
                (key, max(0, entry.floor_tat - now), units * entry.rate.emission_interval_us)
                for key, entry, units in taken
                if units or entry.floor_tat > now
            ]
            aheads = await _charge(client, key_prefix, to_charge)
            # No await from here to the end of the pass: decisions made meanwhile in
            # this process are still in _outage and go in the next pass.
            for key, entry, units in taken:
                if entry.units > units:
                    entry.units -= units
                    entry.floor_tat = 0
                    continue
                del self._outage[key]
                ahead = aheads.get(key)
                if ahead is None:
                    self.memory.forget(key)
                else:
                    self.memory.set_tat(key, self.memory.now_us() + ahead)


@dataclass(slots=True)
class _Outage:
    """A key decided by the fallback during the current outage."""

    rate: Rate
    units: int
    """Units admitted, to charge."""
    floor_tat: int
    """The full-rate TAT last seen in Redis (the store's clock), restored if Redis lost it."""


Charge = tuple[str, int, int]
"""A key, the least its TAT may be ahead of now, and the increment, in microseconds."""


async def _charge(
    client: Redis | RedisCluster, key_prefix: str, charges: list[Charge]
) -> dict[str, int]:
    aheads: dict[str, int] = {}
    for group in _by_slot(client, key_prefix, charges):
        for start in range(0, len(group), _CHARGE_BATCH):
            batch = group[start : start + _CHARGE_BATCH]
            keys = [key_prefix + "{" + key + "}" for key, _, _ in batch]
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
        groups.setdefault(keyslot(key_prefix + "{" + charge[0] + "}"), []).append(charge)
    return list(groups.values())


def _seeded_ahead(tat: int | None, now: int, rate: Rate, scaled: Rate, share: float) -> int:
    """How far ahead the key's TAT starts in the share: what Redis left, times the share."""
    ahead = tat - now if tat is not None and tat > now else 0
    remaining = max(0, (rate.tolerance_us - ahead) // rate.emission_interval_us)
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
