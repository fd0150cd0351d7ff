-- advance.lua: the outflow. Moves the served pointer over the next lines, admitting live
-- tickets within the token bucket and max_active, skipping silent ones (lost priority).
-- KEYS[1] cfg    KEYS[2] draw   KEYS[3] seq    KEYS[4] served  KEYS[5] hb
-- KEYS[6] st     KEYS[7] rq     KEYS[8] skip   KEYS[9] active  KEYS[10] bucket
-- KEYS[11] log   KEYS[12] audit KEYS[13] stats KEYS[14] fence
-- ARGV[1] leader epoch (fencing)   ARGV[2] served pointer the leader expects
-- ARGV[3] heartbeat grace (ms): recorded heartbeats may be this stale (see heartbeats.py)
-- ARGV[4..] arrival number at lines served+1, served+2, ... (0: not a pre-queue line;
--           the script resolves it: a requeue entry, else the line is the arrival number)
-- Returns {served, admitted, skipped, active, waiting_lines} or {-1} when the pointer moved.
local fence = tonumber(redis.call('GET', KEYS[14]) or '0')
local epoch = tonumber(ARGV[1])
if epoch < fence then return redis.error_reply('STALE_LEADER fenced by a newer leader') end
if epoch > fence then redis.call('SET', KEYS[14], epoch) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local served = tonumber(redis.call('GET', KEYS[4]) or '0')
if served ~= tonumber(ARGV[2]) then return {-1} end
local c = redis.call('HMGET', KEYS[1], 'opens_ms', 'closes_ms', 'rate', 'max_active',
  'ttl_ms', 'hb_ms', 'paused')
local maxseq = tonumber(redis.call('GET', KEYS[3]) or '0')
redis.call('ZREMRANGEBYSCORE', KEYS[9], '-inf', now)
local active_n = redis.call('ZCARD', KEYS[9])
if not c[1] or redis.call('HGET', KEYS[2], 'drawn') ~= '1' or c[7] == '1'
    or now < tonumber(c[1]) or now >= tonumber(c[2]) then
  return {served, 0, 0, active_n, maxseq - served}
end
local rate, max_active = tonumber(c[3]), tonumber(c[4])
local ttl, timeout = tonumber(c[5]), tonumber(c[6]) + tonumber(ARGV[3])
local b = redis.call('HMGET', KEYS[10], 'credit', 'ts')
local burst = math.max(1, rate / 60)
local credit = math.min(burst, (tonumber(b[1]) or 0) + (now - (tonumber(b[2]) or now)) * rate / 60000)
if rate <= 0 then credit = 0 end
local line, admitted, skipped = served, 0, 0
for i = 4, #ARGV do
  if line >= maxseq or credit < 1 or active_n >= max_active then break end
  line = line + 1
  local arrival = tonumber(ARGV[i])
  if arrival == 0 then arrival = tonumber(redis.call('HGET', KEYS[7], line) or line) end
  local outcome
  if redis.call('HEXISTS', KEYS[6], arrival) == 1 then
    outcome = 'L'  -- left the line: passes at no cost
  else
    local seen = tonumber(redis.call('HGET', KEYS[5], arrival) or '0')
    if now - seen > timeout then
      outcome = 'S'
      skipped = skipped + 1
      redis.call('HSET', KEYS[8], arrival, line)
      redis.call('RPUSH', KEYS[11], 'S ' .. arrival .. ' ' .. line)
    else
      outcome = 'A'
      admitted = admitted + 1
      credit = credit - 1
      active_n = active_n + 1
      redis.call('ZADD', KEYS[9], now + ttl, arrival)
    end
    redis.call('HDEL', KEYS[5], arrival)
  end
  redis.call('RPUSH', KEYS[12], line .. ' ' .. arrival .. ' ' .. outcome)
end
redis.call('HSET', KEYS[10], 'credit', tostring(credit), 'ts', now)
if line ~= served then
  redis.call('SET', KEYS[4], line)
  redis.call('RPUSH', KEYS[11], 'A ' .. line .. ' ' .. now)
  if admitted > 0 then redis.call('HINCRBY', KEYS[13], 'admitted', admitted) end
  if skipped > 0 then redis.call('HINCRBY', KEYS[13], 'skipped', skipped) end
end
return {line, admitted, skipped, active_n, maxseq - line}
