-- Append one audit entry, indexed, and trim the trail (lib/audit_append.lua). Returns
-- the entry id.
--
-- KEYS[1] the audit stream
-- ARGV[1 ...] the audit items (lib/audit_append.lua names them: the clock, entries kept
--             at most, oldest time kept, index prefix, retention, indexed fields, then
--             the entry's field/value pairs)
--#include audit_append
local audit_key = KEYS[1]

return audit_append(audit_key, {unpack(ARGV)})
