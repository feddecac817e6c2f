-- audit_append(audit_key, now_ms, max_entries, min_id, fields): append one audit entry
-- with an id from the writer's clock (never behind the newest entry), then trim by count
-- (approximate, max_entries) and by age (exact, MINID min_id). fields is a table of
-- field/value pairs. Returns the entry id.
local function audit_append(audit_key, now_ms, max_entries, min_id, fields)
  now_ms = tonumber(now_ms)
  local newest = redis.call('XREVRANGE', audit_key, '+', '-', 'COUNT', 1)[1]
  if newest then
    local newest_ms = tonumber(string.match(newest[1], '^(%d+)'))
    if newest_ms > now_ms then now_ms = newest_ms end
  end
  local id = redis.call('XADD', audit_key, 'MAXLEN', '~', max_entries, now_ms .. '-*',
    unpack(fields))
  redis.call('XTRIM', audit_key, 'MINID', min_id)
  return id
end
