-- GCRA in one round trip; the same integer-microsecond math as hardenkit/ratelimit/gcra.py.
-- KEYS[1]  the key (its {hash tag} keeps every key of a decision in one Cluster slot)
-- ARGV[1]  emission interval, microseconds
-- ARGV[2]  tolerance (burst x emission interval), microseconds
-- ARGV[3]  cost, units
-- ARGV[4]  optional "now" in microseconds, for the equivalence tests only; production
--          leaves it out and the time comes from the Redis server, so app clocks do not matter
-- Returns {allowed (0/1), remaining, retry_after_us, reset_after_us}.
local emission = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local now
if ARGV[4] then
  now = tonumber(ARGV[4])
else
  local time = redis.call('TIME')
  now = tonumber(time[1]) * 1000000 + tonumber(time[2])
end
local tat = redis.call('GET', KEYS[1])
tat = tat and tonumber(tat)
if not tat or tat < now then
  tat = now
end
local new_tat = tat + emission * cost
local allow_at = new_tat - tolerance
if now < allow_at then
  return {0, math.floor((tolerance - (tat - now)) / emission), allow_at - now, tat - now}
end
local ahead = new_tat - now
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil(ahead / 1000))
return {1, math.floor((tolerance - ahead) / emission), 0, ahead}
