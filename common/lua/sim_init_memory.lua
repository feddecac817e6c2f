-- Create a simulated ECU's fault memory once: the first writer wins, so two workers
-- creating the same memory at once agree on it.
--
-- KEYS[1] the ECU's fault memory hash
-- ARGV[1] the marker field, ARGV[2...] the initial code/JSON pairs
local memory_key = KEYS[1]
local marker = ARGV[1]
local FIRST_FIELD = 2

if redis.call('HSETNX', memory_key, marker, '1') == 1 and #ARGV >= FIRST_FIELD then
  redis.call('HSET', memory_key, unpack(ARGV, FIRST_FIELD))
end
return 0
