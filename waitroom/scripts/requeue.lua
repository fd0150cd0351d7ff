-- requeue.lua: a ticket that lost its priority polled again: put it at the end of the line.
-- KEYS[1] cfg  KEYS[2] seq  KEYS[3] hb  KEYS[4] cur  KEYS[5] rq  KEYS[6] skip
-- KEYS[7] log  KEYS[8] stats
-- ARGV[1] arrival number of the ticket
-- Returns {0, new_line} requeued, {1, current_line or 0} it was not waiting to be requeued,
-- {2, 0} the event is closed.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local closes = tonumber(redis.call('HGET', KEYS[1], 'closes_ms') or '0')
local arrival = ARGV[1]
if redis.call('HEXISTS', KEYS[6], arrival) == 0 then
  return {1, tonumber(redis.call('HGET', KEYS[4], arrival) or '0')}
end
if now >= closes then return {2, 0} end
redis.call('HDEL', KEYS[6], arrival)
local line = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[4], arrival, line)
redis.call('HSET', KEYS[5], line, arrival)
redis.call('HSET', KEYS[3], arrival, now)
redis.call('RPUSH', KEYS[7], 'R ' .. arrival .. ' ' .. line)
redis.call('HINCRBY', KEYS[8], 'requeued', 1)
return {0, line}
