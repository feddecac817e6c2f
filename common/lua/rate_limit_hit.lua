-- Count one hit in a fixed rate-limit window. Returns {hits so far, seconds left}.
--
-- KEYS[1] the subject's counter for the current window
-- ARGV[1] window length (seconds)
local counter_key = KEYS[1]
local window_s = ARGV[1]

local hits = redis.call('INCR', counter_key)
if hits == 1 then redis.call('EXPIRE', counter_key, window_s) end
return {hits, redis.call('TTL', counter_key)}
