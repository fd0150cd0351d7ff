-- draw.lua: the draw at opens_at, exactly once. Closes the pre-queue (P = arrivals before
-- opens_at) and reveals the committed seed; the order itself is computed from (seed, P).
-- One chance per family (cfg fam = 1): the lottery's entries are frozen here too, as
-- 'kept' (the arrival numbers holding a family's entry, ascending; family.lua).
-- KEYS[1] cfg  KEYS[2] draw  KEYS[3] seq  KEYS[4] fence  KEYS[5] fam
-- ARGV[1] leader epoch (fencing)
-- Returns 0 too early, 1 drawn now, 2 drawn before, -2 no such event.
local fence = tonumber(redis.call('GET', KEYS[4]) or '0')
local epoch = tonumber(ARGV[1])
if epoch < fence then return redis.error_reply('STALE_LEADER fenced by a newer leader') end
if epoch > fence then redis.call('SET', KEYS[4], epoch) end
local opens = redis.call('HGET', KEYS[1], 'opens_ms')
if not opens then return -2 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if now < tonumber(opens) then return 0 end
if redis.call('HGET', KEYS[2], 'drawn') == '1' then return 2 end
redis.call('HSETNX', KEYS[2], 'prequeue', redis.call('GET', KEYS[3]) or '0')
if redis.call('HGET', KEYS[1], 'fam') == '1' then
  local prequeue = tonumber(redis.call('HGET', KEYS[2], 'prequeue'))
  local kept = {}
  for _, arrival in ipairs(redis.call('HVALS', KEYS[5])) do
    local a = tonumber(arrival)
    if a <= prequeue then kept[#kept + 1] = a end
  end
  table.sort(kept)
  redis.call('HSET', KEYS[2], 'kept', table.concat(kept, ' '))
end
redis.call('HSET', KEYS[2], 'drawn', '1', 'drawn_at', now)
return 1
