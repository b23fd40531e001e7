"""Charging an outage back to Redis: what a rate-limit fallback admitted, key by key.

One script call per batch of keys (per hash slot on a Cluster) adds what each key's
fallback admitted to its TAT, restores a key Redis lost from the state the charging
instance last saw, and takes what was spent off that instance's reservation (see
:mod:`hardenkit.ratelimit._fallback`, and ``gcra.lua`` for the reservations).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from redis.crc import key_slot

from hardenkit.stores import is_cluster, store_key

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.cluster import RedisCluster

__all__ = ["CHARGE_SCRIPT", "MIN_SLACK_US", "RESERVED", "RESTORED", "Charge", "charge_keys"]

RESERVED: Final = ":reserved"
"""Suffix of a key's reservations hash (after the hash tag: same Cluster slot)."""
RESTORED: Final = ":restored"
"""Suffix of a key's restore base, set when a charge restored the key from a floor."""

CHARGE_SCRIPT: Final = """
local now
if ARGV[2] ~= '' then
  now = ARGV[2] + 0
else
  now = redis.call('TIME')
  now = now[1] * 1000000 + now[2]
end
local out = {}
for i = 1, #KEYS / 3 do
  local key, based, reserved = KEYS[3 * i - 2], KEYS[3 * i - 1], KEYS[3 * i]
  local floor = now + ARGV[4 * i - 1]
  local increment = ARGV[4 * i] + 0
  local units = ARGV[4 * i + 1] + 0
  -- A view reads a little late against the server's clock (the time of a reply, a
  -- busy server's time in a long pipeline): a key within the slack below it is the
  -- same view, one Redis kept. A restored key gains every bit a floor is above its
  -- base, slack or not: views one unit apart differ by one emission interval, give or
  -- take that lag, and a slack there would drop the unit whenever the lag is against it.
  local slack = ARGV[4 * i + 2] + 0
  local write = increment > 0
  local tat = tonumber(redis.call('GET', key))
  local base = tonumber(redis.call('GET', based))
  if tat and base then
    if floor > base then
      tat = tat + floor - base
      base = floor
      write = true
    end
  elseif not tat or tat + slack < floor then
    tat = floor
    base = floor
    write = true
  else
    base = nil
  end
  if tat < now then tat = now end
  tat = tat + increment
  local ahead = tat - now
  if ahead > 0 and write then
    local ttl = (ahead - ahead % 1000) / 1000 + 1
    redis.call('SET', key, tat, 'PX', ttl)
    if base then
      -- A base serves the charges and restores of one recovery; kept longer, it would
      -- raise the key again for a view taken after the restore (a later outage).
      if ttl > 60000 then ttl = 60000 end
      redis.call('SET', based, base, 'PX', ttl)
    end
  end
  if units > 0 then
    local value = tonumber(redis.call('HGET', reserved, ARGV[1]))
    if value and value % 65536 > units then
      redis.call('HSET', reserved, ARGV[1], value - units)
    elseif value then
      redis.call('HDEL', reserved, ARGV[1])
    end
  end
  out[i] = ahead
end
return out
"""
"""KEYS holds three keys per charged key: its TAT, its restore base, its reservations.
ARGV[1] is the charging store's id, ARGV[2] a "now" for tests ('' in production: the
server's time), then four values per key: the least its TAT may be ahead of now (what
this instance last saw), the increment (units × emission interval, microseconds), the
units admitted, and the slack (microseconds). A key Redis lost, or holds more than the
slack below that floor, is restored from the floor, which becomes its restore base (kept
a minute at most: the charges of one recovery); a key with a base gains what a floor is
above it (no slack: it would drop a unit between views one emission interval apart).
Then the increment is added whatever the tolerance (what was admitted was admitted),
and the units are taken off the store's reservation. A *restore* (increment and units
0: a key this instance mirrored, not decided during the outage) writes nothing to a key
Redis still has. Answers how far each TAT is ahead of now afterwards."""

_CHARGE_BATCH: Final = 256

MIN_SLACK_US: Final = 250_000
"""The least slack a charge passes (see :attr:`Charge.slack_us`)."""


class Charge(NamedTuple):
    """What one key is charged (microseconds, and the units taken off the reservation)."""

    key: str
    floor_us: int
    """The least its TAT may be ahead of now: what this instance last saw."""
    increment_us: int
    units: int
    """Units this fallback admitted, taken off this store's reservation in Redis."""
    slack_us: int = 0
    """How far below the floor Redis may hold the key and still be taken to have kept it.

    A view is taken from a reply, and a busy server's clock in a long pipeline lags by
    tens of milliseconds: the fallback passes one emission interval (a whole unit),
    at least :data:`MIN_SLACK_US`."""


async def charge_keys(
    client: Redis | RedisCluster,
    key_prefix: str,
    member: str,
    charges: list[Charge],
    now_us: int | None = None,
    *,
    clock: Callable[[], int] | None = None,
    measured_us: int = 0,
    slotted: bool = False,
    into: dict[str, int] | None = None,
) -> dict[str, int]:
    """Run :data:`CHARGE_SCRIPT` over ``charges``; return each key's TAT offset after.

    ``now_us`` replaces the Redis server's clock; only tests pass it. ``clock``: the
    clock the floors were measured by, at ``measured_us``; a batch sent later has its
    floors lowered by the time since (one batch waits for the one before, and building
    100,000 charges takes a while). ``slotted``: the server refuses a script that names
    two hash slots although the client knows none (a cluster-mode server or a sharding
    proxy behind a plain client), so the keys go one slot per call there too. ``into``
    receives each batch's keys as Redis answers it: a caller cut short knows what landed.
    """
    aheads: dict[str, int] = {} if into is None else into
    now = "" if now_us is None else now_us
    for group in _by_slot(client, key_prefix, charges, slotted=slotted):
        for start in range(0, len(group), _CHARGE_BATCH):
            batch = group[start : start + _CHARGE_BATCH]
            late = max(0, clock() - measured_us) if clock is not None else 0
            keys = [
                name for charge in batch for name in _key_names(store_key(key_prefix, charge.key))
            ]
            arguments = [
                value
                for charge in batch
                for value in (
                    max(0, charge.floor_us - late),
                    charge.increment_us,
                    charge.units,
                    charge.slack_us,
                )
            ]
            reply: Any = await client.eval(CHARGE_SCRIPT, len(keys), *keys, member, now, *arguments)
            aheads.update(
                (charge.key, int(ahead)) for charge, ahead in zip(batch, reply, strict=True)
            )
    return aheads


def _key_names(redis_key: str) -> tuple[str, str, str]:
    return redis_key, redis_key + RESTORED, redis_key + RESERVED


def _slot_of(key: str) -> int:
    return key_slot(key.encode())


def _by_slot(
    client: object, key_prefix: str, charges: list[Charge], *, slotted: bool
) -> list[list[Charge]]:
    """One group on a standalone Redis; one per hash slot on a Cluster or where ``slotted``.

    A script's keys must share a slot on a Cluster, and on a server that enforces slots.
    """
    if not is_cluster(client) and not slotted:
        return [charges] if charges else []
    keyslot: Callable[[str], int] = getattr(client, "keyslot", None) or _slot_of
    groups: dict[int, list[Charge]] = {}
    for charge in charges:
        groups.setdefault(keyslot(store_key(key_prefix, charge.key)), []).append(charge)
    return list(groups.values())
