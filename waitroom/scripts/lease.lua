-- lease.lua: acquire or renew the queue-service leader lease.
-- KEYS[1] lease  KEYS[2] epoch counter
-- ARGV[1] this process's current lease value ("" when it holds none)  ARGV[2] ttl (ms)
-- ARGV[3] instance name
-- Returns the lease value held after the call ("epoch:instance"), or false when another
-- process holds it. Single-node keys only: the lease is global, not per event.
local held = redis.call('GET', KEYS[1])
if held and held == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return held
end
if held then return false end
local epoch = redis.call('INCR', KEYS[2])
local value = epoch .. ':' .. ARGV[3]
redis.call('SET', KEYS[1], value, 'PX', ARGV[2])
return value
