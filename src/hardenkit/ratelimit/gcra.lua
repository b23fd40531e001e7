-- GCRA in one round trip, with reservations; the same integer math as
-- hardenkit/ratelimit/gcra.py (gcra_reserving).
-- KEYS[1]  the key's TAT
-- KEYS[2]  the key's reservations: a hash, field = a store's id, value = its expiry in
--          tenths of a second (the server's clock, rounded up) x 65536 + its units. Both
--          keys share one {hash tag}, so one Cluster slot.
-- ARGV[1]  increment: cost x emission interval, microseconds
-- ARGV[2]  tolerance: burst x emission interval, microseconds
-- ARGV[3]  emission interval, microseconds
-- ARGV[4]  the deciding store's id
-- ARGV[5]  live instances: above 1 the store reserves floor(left / ARGV[5]) for itself,
--          at most 65535 units (1: it reserves nothing and drops what it held)
-- ARGV[6]  how long a reservation holds, microseconds
-- ARGV[7]  optional "now" in microseconds, for the tests only; production passes '' (or
--          nothing) and the time comes from the Redis server, so app clocks do not matter
-- KEYS[3]  optional (standalone Redis and Sentinel): the store's epoch, the time (in
--          microseconds) from which Redis decides. Redis loses it with its data: a missing
--          epoch is created as now + ARGV[8], and until that time every decision answers
--          "hold" (nothing is read or stored), so that the instances restore the keys
--          they mirrored before any of them decides on an empty Redis.
-- ARGV[8]  with KEYS[3]: the hold, microseconds (0 from a store that never had an answer
--          from Redis: a first deployment, not a Redis that lost its data)
-- Returns three integers: the decision, as how far the key's TAT is ahead of now after it
-- (at least 1) when admitted, or -1 - that offset when refused (nothing is stored then),
-- or 0 for "hold"; then the units now reserved for this store when admitted, or the
-- microseconds to wait before the same request is admitted when refused, or until the
-- hold ends; then the units the other stores hold, or with a hold how far the key's TAT
-- in Redis is ahead of now (0: none).
--
-- Others' unexpired reservations are not available to this store: it is admitted only if
-- they still fit in what is left after it. Its own is. So the reservations never add up to
-- more than is left (decisions keep it, refill only adds), and in an outage every instance
-- may spend its own without the sum exceeding what was left.
--
-- Written for time inside Redis, which every decision waits for: ARGV strings become
-- numbers by arithmetic (ARGV[1] + 0) rather than tonumber, floor is taken by modulo, no
-- string function runs, and numbers are passed to SET and HSET as numbers (Redis writes
-- integral numbers as plain integers). Every value stays below 2^53 (Rate bounds the
-- tolerance; a reservation's number until the year 2400), so Lua's doubles are exact.
local now
if ARGV[7] and ARGV[7] ~= '' then
  now = ARGV[7] + 0
else
  now = redis.call('TIME')
  now = now[1] * 1000000 + now[2]
end
if KEYS[3] then
  local ready = tonumber(redis.call('GET', KEYS[3]))
  -- More than a minute ahead (hardenkit.stores.MAX_HOLD_US): set by a clock stepped
  -- back since, not a hold; set again rather than held for as long as it was off.
  if not ready or ready > now + 60000000 then
    ready = now + ARGV[8]
    redis.call('SET', KEYS[3], ready)
  end
  if now < ready then
    -- What Redis holds of the key (restored, or kept), for the share to start from.
    local tat = tonumber(redis.call('GET', KEYS[1]))
    if tat and tat > now then
      return {0, ready - now, tat - now}
    end
    return {0, ready - now, 0}
  end
end
-- tonumber: a missing key (false) or a value that is not a number reads as a full bucket.
local ahead = tonumber(redis.call('GET', KEYS[1]))
if ahead and ahead > now then
  ahead = ahead - now
else
  ahead = 0
end
local me = ARGV[4]
local number = tonumber
local held = 0 -- units the other stores hold
local freed = 0 -- when the last of them expires
local mine = false
local fields = redis.call('HGETALL', KEYS[2])
for i = 1, #fields, 2 do
  -- A reservation is one number: its expiry in tenths of a second times 65536, plus
  -- its units (at most 65535), so reading it is arithmetic, not a string function.
  local value = number(fields[i + 1])
  local units = 0
  local expiry = 0
  if value then
    units = value % 65536
    expiry = (value - units) / 65536 * 100000
  end
  if expiry <= now then
    redis.call('HDEL', KEYS[2], fields[i])
  elseif fields[i] == me then
    mine = true
  else
    held = held + units
    if expiry > freed then freed = expiry end
  end
end
local after = ahead + ARGV[1]
local emission = ARGV[3] + 0
local room = ARGV[2] - after
if room < held * emission then
  -- Admitted once the reservations in its way expire and enough has refilled for the
  -- request alone, or sooner once enough has refilled for both (if a full bucket has).
  local wait = -room
  if freed - now > wait then wait = freed - now end
  if held * emission <= ARGV[2] - ARGV[1] and held * emission - room < wait then
    wait = held * emission - room
  end
  return {-1 - ahead, wait, held}
end
-- Expires once the bucket is full again (whole milliseconds, never earlier).
redis.call('SET', KEYS[1], now + after, 'PX', (after - after % 1000) / 1000 + 1)
local left = (room - room % emission) / emission
local instances = ARGV[5] + 0
local reserved = 0
if instances > 1 then
  reserved = (left - left % instances) / instances
  if reserved > left - held then reserved = left - held end
end
if reserved > 65535 then reserved = 65535 end
if reserved > 0 then
  local expiry = now + ARGV[6]
  expiry = (expiry - expiry % 100000) / 100000 + 1 -- tenths of a second, rounded up
  redis.call('HSET', KEYS[2], me, expiry * 65536 + reserved)
  expiry = expiry * 100000
  if expiry > freed then freed = expiry end
  local life = freed - now -- the hash expires with its last field
  redis.call('PEXPIRE', KEYS[2], (life - life % 1000) / 1000 + 1)
elseif mine then
  redis.call('HDEL', KEYS[2], me)
end
return {after, reserved, held}
