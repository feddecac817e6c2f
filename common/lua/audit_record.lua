-- Append one audit entry with an id from the writer's clock (never behind the newest
-- entry), then trim by count (approximate) and by age (exact). Returns the entry id.
--
-- KEYS[1] the audit stream
-- ARGV[1] the writer's clock (epoch milliseconds)
-- ARGV[2] entries kept at most (approximate)
-- ARGV[3] oldest entry id kept (MINID, epoch milliseconds)
-- ARGV[4...] the entry's field/value pairs
local audit_key = KEYS[1]
local now_ms = tonumber(ARGV[1])
local max_entries, min_id = ARGV[2], ARGV[3]
local FIRST_FIELD = 4

local newest = redis.call('XREVRANGE', audit_key, '+', '-', 'COUNT', 1)[1]
if newest then
  local newest_ms = tonumber(string.match(newest[1], '^(%d+)'))
  if newest_ms > now_ms then now_ms = newest_ms end
end
local id = redis.call('XADD', audit_key, 'MAXLEN', '~', max_entries, now_ms .. '-*',
  unpack(ARGV, FIRST_FIELD))
redis.call('XTRIM', audit_key, 'MINID', min_id)
return id
