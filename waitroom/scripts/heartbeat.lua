-- heartbeat.lua: record when tickets were last seen; a ticket's time never moves back.
-- KEYS[1] hb
-- ARGV[1]: "arrival:ms,arrival:ms,..." (ms on the shared clock, when a gateway saw the
-- poll). One string rather than two arguments a ticket: a gateway sends thousands a
-- second, and redis-py's packing of each argument cost more than the rest of the write.
-- Returns how many times moved forward.
-- A gateway that could not write for a while (its link down, Redis failing over) writes
-- its older times late. A plain HSET put a ticket that another gateway saw since back
-- in the past, and the leader skipped it if its turn came before the next write.
local n = 0
for arrival, ms in string.gmatch(ARGV[1], '(%d+):(%d+)') do
  local seen = tonumber(redis.call('HGET', KEYS[1], arrival) or '0')
  if tonumber(ms) > seen then
    redis.call('HSET', KEYS[1], arrival, ms)
    n = n + 1
  end
end
return n
