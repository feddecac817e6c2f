-- Record one command event (or an error and the event after it) and publish it, in one
-- atomic step: the log is written before the publish. Optionally counts a delivery
-- first (HINCRBY of one field) and writes an audit entry. Returns {result, value}:
-- result is the last seq written, 0 when refused (a duplicate response, a repeated or
-- late status, a status the caller did not expect) or -1 when the command does not
-- exist; value is one field of the command read after the change ('' when unset).
--
-- KEYS[1] command hash          KEYS[2] responses hash (number -> response JSON)
-- KEYS[3] events stream         KEYS[4] deadlines zset
-- KEYS[5] the audit stream
-- ARGV[1]  the command's Pub/Sub channel
-- ARGV[2]  events kept in the stream (MAXLEN ~)   ARGV[3] stream TTL (seconds)
-- ARGV[4]  kind: 'response' | 'status' | 'notice'
-- ARGV[5]  response number (response) or the new status (status)
-- ARGV[6]  the response JSON (response)
-- ARGV[7]  terminal statuses (space-separated)
-- ARGV[8]  statuses the change needs ('' = any non-terminal)
-- ARGV[9]  vehicle-active key prefix (the vehicle id follows)
-- ARGV[10] per-type status counters hash    ARGV[11] duration histogram key prefix
-- ARGV[12] histogram bounds in seconds (space-separated)
-- ARGV[13] by-status index key prefix (the status follows)
-- ARGV[14] number N of event bodies (JSON objects without seq)
-- ARGV[15] audit entry: '' none, 'recorded' when the change is recorded, 'always' also
--          when it is refused (not for a missing or ended command)
-- ARGV[16] number A of audit items (common/audit.py builds them; lib/audit_append.lua
--          names them)
-- ARGV[17] command field to increment by one first ('' = none)
-- ARGV[18] command field to read back
-- ARGV[19 .. 18+N] the event bodies, then the A audit items, then field/value pairs to
--          set on the command
--#include audit_append
local command_key, responses_key, events_key, deadlines_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local audit_key = KEYS[5]
local channel, maxlen, ttl_s = ARGV[1], ARGV[2], ARGV[3]
local kind, target, response_json = ARGV[4], ARGV[5], ARGV[6]
local terminal, expected = ' ' .. ARGV[7] .. ' ', ARGV[8]
local active_prefix, counters_key, histogram_prefix, bounds = ARGV[9], ARGV[10], ARGV[11], ARGV[12]
local status_prefix, body_count = ARGV[13], tonumber(ARGV[14])
local audit_mode, audit_count = ARGV[15], tonumber(ARGV[16])
local counted_field, read_field = ARGV[17], ARGV[18]
local FIRST_BODY = 19
local first_audit = FIRST_BODY + body_count
local first_field = first_audit + audit_count

local function listed(list, item) return string.find(list, ' ' .. item .. ' ', 1, true) end
local function answer(result) return {result, redis.call('HGET', command_key, read_field) or ''} end
local function audit()
  if audit_mode ~= '' and audit_count > 0 then
    audit_append(audit_key, {unpack(ARGV, first_audit, first_field - 1)})
  end
end
local function refuse()
  if audit_mode == 'always' then audit() end
  return answer(0)
end

local status = redis.call('HGET', command_key, 'status')
if not status then return {-1, ''} end
if counted_field ~= '' then redis.call('HINCRBY', command_key, counted_field, 1) end
if listed(terminal, status) then return answer(0) end
if expected ~= '' and not listed(' ' .. expected .. ' ', status) then return refuse() end
if kind == 'response' then
  if redis.call('HSETNX', responses_key, target, response_json) == 0 then return refuse() end
elseif kind == 'status' then
  if status == target then return refuse() end
  redis.call('HSET', command_key, 'status', target)
  local command_id, submitted = unpack(redis.call('HMGET', command_key, 'command_id',
    'submitted_ts'))
  redis.call('ZREM', status_prefix .. status, command_id)
  redis.call('ZADD', status_prefix .. target, submitted or 0, command_id)
  if listed(terminal, target) then
    local command = redis.call('HMGET', command_key, 'command_id', 'vehicle_id', 'command_name',
      'submitted_ts')
    local command_id, vehicle_id, name = command[1], command[2], command[3]
    redis.call('HDEL', active_prefix .. vehicle_id, command_id)
    redis.call('ZREM', deadlines_key, command_id)
    redis.call('HINCRBY', counters_key, name .. '|' .. target, 1)
    local submitted = tonumber(command[4] or '')
    if submitted then
      local now = redis.call('TIME')
      local took = tonumber(now[1]) + tonumber(now[2]) / 1000000 - submitted
      local histogram = histogram_prefix .. name
      redis.call('HINCRBYFLOAT', histogram, 'sum', took)
      redis.call('HINCRBY', histogram, 'count', 1)
      for bound in string.gmatch(bounds, '%S+') do
        if took <= tonumber(bound) then redis.call('HINCRBY', histogram, bound, 1) end
      end
    end
  end
end
for i = first_field, #ARGV, 2 do redis.call('HSET', command_key, ARGV[i], ARGV[i + 1]) end
-- The request that created the command travels in its events (validated id characters).
local request_id = redis.call('HGET', command_key, 'request_id')
local correlation = ''
if request_id then correlation = '"request_id":"' .. request_id .. '",' end
local seq = 0
for i = FIRST_BODY, first_audit - 1 do
  seq = redis.call('HINCRBY', command_key, 'event_seq', 1)
  local event = '{"seq":' .. seq .. ',' .. correlation .. string.sub(ARGV[i], 2)
  redis.call('XADD', events_key, 'MAXLEN', '~', maxlen, seq .. '-0', 'event', event)
  redis.call('PUBLISH', channel, event)
end
redis.call('EXPIRE', events_key, ttl_s)
audit()
return answer(seq)
