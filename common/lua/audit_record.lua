-- Append one audit entry with an id from the writer's clock (never behind the newest
-- entry), then trim by count (approximate) and by age (exact). Returns the entry id.
--
-- KEYS[1] the audit stream
-- ARGV[1] the writer's clock (epoch milliseconds)
-- ARGV[2] entries kept at most (approximate)
-- ARGV[3] oldest entry id kept (MINID, epoch milliseconds)
-- ARGV[4...] the entry's field/value pairs
--#include audit_append
local audit_key = KEYS[1]
local now_ms, max_entries, min_id = ARGV[1], ARGV[2], ARGV[3]
local FIRST_FIELD = 4

return audit_append(audit_key, now_ms, max_entries, min_id, {unpack(ARGV, FIRST_FIELD)})
