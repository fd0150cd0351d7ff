-- leave.lua: a ticket leaves the line, or its admitted session ends (freeing its slot).
-- KEYS[1] seq  KEYS[2] st  KEYS[3] active  KEYS[4] skip  KEYS[5] hb  KEYS[6] log
-- KEYS[7] stats
-- ARGV[1] arrival number
-- Returns -1 unknown ticket, 0 already gone, 1 left the line, 2 ended an admitted session.
local arrival = ARGV[1]
if tonumber(arrival) > tonumber(redis.call('GET', KEYS[1]) or '0') then return -1 end
if redis.call('HEXISTS', KEYS[2], arrival) == 1 then return 0 end
redis.call('HDEL', KEYS[4], arrival)
redis.call('HDEL', KEYS[5], arrival)
if redis.call('ZREM', KEYS[3], arrival) == 1 then
  redis.call('HSET', KEYS[2], arrival, 'E')
  redis.call('RPUSH', KEYS[6], 'E ' .. arrival)
  redis.call('HINCRBY', KEYS[7], 'ended', 1)
  return 2
end
redis.call('HSET', KEYS[2], arrival, 'L')
redis.call('RPUSH', KEYS[6], 'L ' .. arrival)
redis.call('HINCRBY', KEYS[7], 'left', 1)
return 1
