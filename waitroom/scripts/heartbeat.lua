-- heartbeat.lua: record when tickets were last seen; a ticket's time never moves back.
-- KEYS[1] hb
-- ARGV: arrival, ms, arrival, ms, ... (ms on the shared clock, when a gateway saw the poll)
-- Returns how many times moved forward.
-- A gateway that could not write for a while (its link down, Redis failing over) writes
-- its older times late. A plain HSET put a ticket that another gateway saw since back
-- in the past, and the leader skipped it if its turn came before the next write.
local n = 0
for i = 1, #ARGV, 2 do
  local seen = tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or '0')
  if tonumber(ARGV[i + 1]) > seen then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
    n = n + 1
  end
end
return n
