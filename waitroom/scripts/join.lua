-- join.lua: issue tickets for a batch of joins of one event, atomically.
-- KEYS[1] cfg   KEYS[2] draw   KEYS[3] seq    KEYS[4] served  KEYS[5] hb
-- KEYS[6] active KEYS[7] bucket KEYS[8] log   KEYS[9] audit   KEYS[10] stats
-- KEYS[11..]   the rate-limit key of each join (one per join, repeats allowed)
-- ARGV[1] joins one client may make per window   ARGV[2] window length (ms)
-- ARGV[3] how long a join proof's key lives (ms): a proof's key (":rl:pow:") allows one
--         join, once (gateway/proof.py)
-- Returns {now_ms, "code,arrival,admitted,retry_ms code,arrival,..."}: one group per join,
-- in one string (one reply to parse, not five per join: the gateway's join path spent
-- a seventh of its time parsing nested replies).
-- code: 0 ticket issued, 1 not_open, 2 closed, 3 rate_limited, 4 unknown_event.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = #KEYS - 10
local out = {}
local c = redis.call('HMGET', KEYS[1], 'wro_ms', 'opens_ms', 'closes_ms', 'rate',
  'max_active', 'ttl_ms', 'paused')
local code = 0
if not c[1] then
  code = 4
elseif now < tonumber(c[1]) then
  code = 1
elseif now >= tonumber(c[3]) then
  code = 2
end
if code ~= 0 then
  for i = 1, n do out[i] = code .. ',0,0,0' end
  return {now, table.concat(out, ' ')}
end
if now >= tonumber(c[2]) then
  -- The first arrival after opens_at closes the pre-queue: P is exact, not "whenever the
  -- leader got round to drawing".
  redis.call('HSETNX', KEYS[2], 'prequeue', redis.call('GET', KEYS[3]) or '0')
end
local rate, max_active, ttl = tonumber(c[4]), tonumber(c[5]), tonumber(c[6])
local can_admit = c[7] ~= '1' and redis.call('HGET', KEYS[2], 'drawn') == '1'
local credit, active_n = 0, 0
if can_admit then
  redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', now)
  active_n = redis.call('ZCARD', KEYS[6])
  local b = redis.call('HMGET', KEYS[7], 'credit', 'ts')
  local burst = math.max(1, rate / 60)
  credit = math.min(burst, (tonumber(b[1]) or 0) + (now - (tonumber(b[2]) or now)) * rate / 60000)
  if rate <= 0 then credit = 0 end
end
local limit, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local issued, admitted_n = 0, 0
for i = 1, n do
  local key = KEYS[10 + i]
  local allowed, ttl = limit, window
  if string.find(key, ':rl:pow:', 1, true) then allowed, ttl = 1, tonumber(ARGV[3]) end
  local used = redis.call('INCR', key)
  if used == 1 then redis.call('PEXPIRE', key, ttl) end
  if used > allowed then
    out[i] = '3,0,0,' .. redis.call('PTTL', key)
  else
    local arrival = redis.call('INCR', KEYS[3])
    issued = issued + 1
    local admitted = 0
    -- Nobody waiting, room, and outflow credit: straight in, no waiting room.
    if can_admit and credit >= 1 and active_n < max_active
        and tonumber(redis.call('GET', KEYS[4]) or '0') == arrival - 1 then
      redis.call('SET', KEYS[4], arrival)
      redis.call('ZADD', KEYS[6], now + ttl, arrival)
      redis.call('RPUSH', KEYS[8], 'A ' .. arrival .. ' ' .. now)
      redis.call('RPUSH', KEYS[9], arrival .. ' ' .. arrival .. ' A')
      credit = credit - 1
      active_n = active_n + 1
      admitted = 1
      admitted_n = admitted_n + 1
    else
      redis.call('HSET', KEYS[5], arrival, now)
    end
    out[i] = '0,' .. arrival .. ',' .. admitted .. ',0'
  end
end
if can_admit then
  redis.call('HSET', KEYS[7], 'credit', tostring(credit), 'ts', now)
end
if issued > 0 then redis.call('HINCRBY', KEYS[10], 'joined', issued) end
if admitted_n > 0 then redis.call('HINCRBY', KEYS[10], 'admitted', admitted_n) end
return {now, table.concat(out, ' ')}
