-- audit_append(audit_key, items): append one audit entry with an id from the writer's
-- clock (never behind the newest entry) and index it by each filterable field it has,
-- and in the index of every entry. Then trim: entries older than the retention and those
-- past the count limit leave the stream with their index entries (at most 100 per call,
-- so a write stays short; readers bound their range by the retention, so a backlog never
-- shows). An index unwritten for the retention holds only expired entries and expires.
-- Returns the entry id.
--
-- items, as common/audit.py:_record_args builds them:
--   [1] the writer's clock (epoch ms)   [2] entries kept at most
--   [3] oldest entry time kept (epoch ms)
--   [4] index key prefix (`<field>:<value>` follows; `all:` is every entry)
--   [5] retention (seconds)              [6] the indexed field names (space-separated)
--   [7 ...] the entry's field/value pairs
local function audit_append(audit_key, items)
  local now_ms, max_entries, min_ms = tonumber(items[1]), tonumber(items[2]), items[3]
  local index_prefix, retention_s, indexed = items[4], items[5], ' ' .. items[6] .. ' '
  local fields = {unpack(items, 7)}
  local TRIM_BATCH = 100

  local function indexes_of(pairs_list)
    local keys = {index_prefix .. 'all:'}
    for i = 1, #pairs_list, 2 do
      if string.find(indexed, ' ' .. pairs_list[i] .. ' ', 1, true) then
        keys[#keys + 1] = index_prefix .. pairs_list[i] .. ':' .. pairs_list[i + 1]
      end
    end
    return keys
  end

  local newest = redis.call('XREVRANGE', audit_key, '+', '-', 'COUNT', 1)[1]
  if newest then
    local newest_ms = tonumber(string.match(newest[1], '^(%d+)'))
    if newest_ms > now_ms then now_ms = newest_ms end
  end
  local id = redis.call('XADD', audit_key, now_ms .. '-*', unpack(fields))
  for _, key in ipairs(indexes_of(fields)) do
    redis.call('ZADD', key, now_ms, id)
    redis.call('EXPIRE', key, retention_s)
  end

  local expired = #redis.call('XRANGE', audit_key, '-', '(' .. min_ms, 'COUNT', TRIM_BATCH)
  local surplus = redis.call('XLEN', audit_key) - max_entries
  local victims = math.min(math.max(expired, surplus), TRIM_BATCH)
  if victims > 0 then
    for _, entry in ipairs(redis.call('XRANGE', audit_key, '-', '+', 'COUNT', victims)) do
      for _, key in ipairs(indexes_of(entry[2])) do redis.call('ZREM', key, entry[1]) end
      redis.call('XDEL', audit_key, entry[1])
    end
  end
  return id
end
