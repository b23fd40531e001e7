-- Shared circuit breaker state, one atomic step per call (see shared.py).
-- KEYS[1]: state hash, KEYS[2]: window (a list of outcome codes, or a hash of buckets).
-- Both keys carry the same hash tag, so the script runs on Redis Cluster.
local state_key, window_key = KEYS[1], KEYS[2]
local op = ARGV[1]
local failed = tonumber(ARGV[2])
local slow = tonumber(ARGV[3])
local window_type = ARGV[4]
local size = tonumber(ARGV[5])
local minimum = tonumber(ARGV[6])
local failure_threshold = tonumber(ARGV[7])
local slow_threshold = tonumber(ARGV[8])
local permitted = tonumber(ARGV[9])
local wait_ms = tonumber(ARGV[10])
local multiplier = tonumber(ARGV[11])
local max_wait_ms = tonumber(ARGV[12])
local ttl = tonumber(ARGV[13])

-- One clock for the whole fleet: the server's.
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)

local f = redis.call('HMGET', state_key, 'state', 'open_until', 'opens', 'trials_left',
  'trial_total', 'trial_failed', 'trial_slow', 'w_total', 'w_failed', 'w_slow', 'w_second',
  'half_open_since')
local s = {
  state = f[1] or 'closed',
  open_until = tonumber(f[2]) or 0,
  opens = tonumber(f[3]) or 0,
  trials_left = tonumber(f[4]) or 0,
  trial_total = tonumber(f[5]) or 0,
  trial_failed = tonumber(f[6]) or 0,
  trial_slow = tonumber(f[7]) or 0,
  w_total = tonumber(f[8]) or 0,
  w_failed = tonumber(f[9]) or 0,
  w_slow = tonumber(f[10]) or 0,
  w_second = tonumber(f[11]) or -1,
  half_open_since = tonumber(f[12]) or 0,
}
local previous, reason, failure_rate, slow_rate = '', '', '', ''

local function reset_window()
  redis.call('DEL', window_key)
  s.w_total, s.w_failed, s.w_slow, s.w_second = 0, 0, 0, -1
end

local function go(target, why)
  previous, reason = s.state, why
  s.state = target
  reset_window()
end

local function to_open(why)
  s.opens = s.opens + 1
  local wait = wait_ms * (multiplier ^ (s.opens - 1))
  if max_wait_ms > 0 and wait > max_wait_ms then wait = max_wait_ms end
  s.open_until = now + math.floor(wait)
  go('open', why)
end

local function to_half_open()
  s.trials_left, s.trial_total, s.trial_failed, s.trial_slow = permitted, 0, 0, 0
  s.half_open_since = now
  go('half_open', 'wait_elapsed')
end

local function judge(total, nfailed, nslow, phase)
  local fr = nfailed * 100.0 / total
  local sr = nslow * 100.0 / total
  failure_rate, slow_rate = tostring(fr), tostring(sr)
  if fr >= failure_threshold then
    if phase == 'closed' then to_open('failure_rate') else to_open('trial_failed') end
  elseif sr >= slow_threshold then
    if phase == 'closed' then to_open('slow_call_rate') else to_open('trial_failed') end
  elseif phase == 'half_open' then
    s.opens = 0
    go('closed', 'trial_succeeded')
  end
end

local function evict_seconds(second)
  -- Time window: one hash field per second, "total:failed:slow".
  if s.w_second >= 0 and second <= s.w_second then return end
  local buckets = redis.call('HGETALL', window_key)
  for i = 1, #buckets, 2 do
    local bucket_second = tonumber(buckets[i])
    if bucket_second <= second - size then
      local t, fl, sl = string.match(buckets[i + 1], '(%d+):(%d+):(%d+)')
      s.w_total = s.w_total - tonumber(t)
      s.w_failed = s.w_failed - tonumber(fl)
      s.w_slow = s.w_slow - tonumber(sl)
      redis.call('HDEL', window_key, buckets[i])
    end
  end
  s.w_second = second
end

local function add_outcome()
  if window_type == 'count' then
    redis.call('RPUSH', window_key, failed + 2 * slow)
    if s.w_total >= size then
      local old = tonumber(redis.call('LPOP', window_key))
      s.w_failed = s.w_failed - (old % 2)
      s.w_slow = s.w_slow - math.floor(old / 2)
    else
      s.w_total = s.w_total + 1
    end
  else
    local second = math.floor(now / 1000)
    evict_seconds(second)
    local bucket = redis.call('HGET', window_key, tostring(second)) or '0:0:0'
    local t, fl, sl = string.match(bucket, '(%d+):(%d+):(%d+)')
    redis.call('HSET', window_key, tostring(second),
      (tonumber(t) + 1) .. ':' .. (tonumber(fl) + failed) .. ':' .. (tonumber(sl) + slow))
    s.w_total = s.w_total + 1
  end
  s.w_failed = s.w_failed + failed
  s.w_slow = s.w_slow + slow
end

local allowed = 1
if op == 'acquire' then
  if s.state == 'open' then
    if now >= s.open_until then to_half_open() else allowed = 0 end
  end
  if s.state == 'half_open' and allowed == 1 then
    if s.trials_left > 0 then
      s.trials_left = s.trials_left - 1
    elseif now - s.half_open_since > wait_ms then
      -- Trial permits taken by processes that died: start the trial over.
      s.trials_left, s.trial_total, s.trial_failed, s.trial_slow = permitted - 1, 0, 0, 0
      s.half_open_since = now
    else
      allowed = 0
    end
  end
elseif op == 'release' then
  if s.state == 'half_open' and s.trials_left < permitted then
    s.trials_left = s.trials_left + 1
  end
elseif op == 'record' then
  if s.state == 'closed' then
    add_outcome()
    if (s.w_failed > 0 or s.w_slow > 0) and s.w_total >= minimum then
      judge(s.w_total, s.w_failed, s.w_slow, 'closed')
    end
  elseif s.state == 'half_open' then
    s.trial_total = s.trial_total + 1
    s.trial_failed = s.trial_failed + failed
    s.trial_slow = s.trial_slow + slow
    if s.trial_total >= permitted then
      judge(s.trial_total, s.trial_failed, s.trial_slow, 'half_open')
    end
  end
end

redis.call('HSET', state_key, 'state', s.state, 'open_until', s.open_until, 'opens', s.opens,
  'trials_left', s.trials_left, 'trial_total', s.trial_total, 'trial_failed', s.trial_failed,
  'trial_slow', s.trial_slow, 'w_total', s.w_total, 'w_failed', s.w_failed,
  'w_slow', s.w_slow, 'w_second', s.w_second, 'half_open_since', s.half_open_since)
redis.call('PEXPIRE', state_key, ttl)
if redis.call('EXISTS', window_key) == 1 then redis.call('PEXPIRE', window_key, ttl) end

local remaining = 0
if s.state == 'open' then remaining = s.open_until - now end
return {s.state, allowed, remaining, previous, reason, failure_rate, slow_rate}
