-- release.lua: give the leader lease up on a clean shutdown, if still ours.
-- KEYS[1] lease
-- ARGV[1] this process's lease value
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
