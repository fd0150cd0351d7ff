-- family.lua: one chance per family. A pre-queue ticket claims its family's one entry in
-- the draw; the first ticket of a family to claim keeps it (decided before the draw, so
-- it cannot depend on whom the draw favours).
-- KEYS[1] cfg  KEYS[2] draw  KEYS[3] fam  KEYS[4] tfam
-- ARGV[1] arrival   ARGV[2] family key (HMAC of the client number)   ARGV[3] client number
-- Returns {code, arrival holding the family's entry}: 0 kept, 1 already this ticket's,
-- 2 the family's entry is another ticket's, 3 the draw has happened, 4 this ticket
-- identified another family, 6 not a one-per-family event.
if redis.call('HGET', KEYS[1], 'fam') ~= '1' then return {6, 0} end
if redis.call('HGET', KEYS[2], 'drawn') == '1' then return {3, 0} end
local arrival = ARGV[1]
local holder = redis.call('HGET', KEYS[3], ARGV[2])
if holder == arrival then return {1, tonumber(arrival)} end
if redis.call('HEXISTS', KEYS[4], arrival) == 1 then return {4, 0} end
if holder then return {2, tonumber(holder)} end
redis.call('HSET', KEYS[3], ARGV[2], arrival)
redis.call('HSET', KEYS[4], arrival, ARGV[3])
return {0, tonumber(arrival)}
