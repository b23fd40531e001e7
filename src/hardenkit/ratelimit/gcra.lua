-- GCRA in one round trip; the same integer-microsecond math as hardenkit/ratelimit/gcra.py.
-- KEYS[1]  the key (its {hash tag} keeps every key of a decision in one Cluster slot)
-- ARGV[1]  increment: cost x emission interval, microseconds
-- ARGV[2]  tolerance: burst x emission interval, microseconds
-- ARGV[3]  optional "now" in microseconds, for the equivalence tests only; production
--          leaves it out and the time comes from the Redis server, so app clocks do not matter
-- Returns one integer: how far the key's TAT is ahead of now after the decision, in
-- microseconds (at least 1) when admitted, or -1 - that offset when refused (nothing is
-- stored then). Python derives remaining, retry-after and reset-after from it.
--
-- Written for time inside Redis, which every decision waits for: ARGV strings become
-- numbers by arithmetic (ARGV[1] + 0) rather than tonumber, floor is taken by modulo, and
-- the TAT is passed to SET as a number (Redis writes integral numbers as plain integers).
-- Every value stays below 2^53 (Rate bounds the tolerance), so Lua's doubles are exact.
local now
if ARGV[3] then
  now = ARGV[3] + 0
else
  now = redis.call('TIME')
  now = now[1] * 1000000 + now[2]
end
-- tonumber: a missing key (false) or a value that is not a number reads as a full bucket.
local ahead = tonumber(redis.call('GET', KEYS[1]))
if ahead and ahead > now then
  ahead = ahead - now
else
  ahead = 0
end
local after = ahead + ARGV[1]
if after > ARGV[2] + 0 then
  return -1 - ahead
end
-- Expires once the bucket is full again (whole milliseconds, never earlier).
redis.call('SET', KEYS[1], now + after, 'PX', (after - after % 1000) / 1000 + 1)
return after
