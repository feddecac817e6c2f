-- Submit one command in one step: rate limit, vehicle, per-vehicle admission, then store
-- and index the command, queue its Dramatiq message and write its audit entry. Returns a
-- table whose first item names the outcome:
--   {'rate_limited', ttl seconds}          the user's window is full (nothing stored)
--   {'vehicle_not_found'}                  no such vehicle (nothing stored)
--   {'offline', vehicle JSON}              the vehicle is not connected (nothing stored;
--                                          the caller records the rejection)
--   {'busy', blocking command id, vehicle JSON}  no room on the vehicle (nothing stored)
--   {'admitted', vehicle JSON}             stored, indexed, holding its vehicle place,
--                                          queued and audited
-- Run again with the same command id (a retry after a dropped reply), it answers
-- {'admitted', ''} and changes nothing.
--
-- The message is queued as Dramatiq's dispatch.lua 'enqueue' does (the message in the
-- queue's messages hash, its id pushed on the queue's list; tests/unit/
-- test_broker_contract.py checks a stock Dramatiq consumer takes it), and one wake-up
-- token is pushed for an idle consumer (common/broker.py).
--
-- KEYS[1] rate limit counter of the user's current window
-- KEYS[2] vehicle document (JSON)
-- KEYS[3] vehicle-active hash (command id -> '<d|n>:<submitted score>')
-- KEYS[4] command hash
-- KEYS[5] commands index, KEYS[6] by-user index, KEYS[7] by-vehicle index
-- KEYS[8] deadlines zset
-- KEYS[9] Dramatiq queue list     KEYS[10] Dramatiq queue messages hash
-- KEYS[11] the queue's wake-up list
-- KEYS[12] the audit stream
-- KEYS[13] by-status index of pending commands, KEYS[14] by-type index of the command's type
-- ARGV[1] rate limit window (seconds)    ARGV[2] rate limit (hits per window)
-- ARGV[3] command id                     ARGV[4] 'd' destructive or 'n'
-- ARGV[5] max concurrent per vehicle     ARGV[6] submitted score (epoch seconds)
-- ARGV[7] deadline score (epoch seconds)
-- ARGV[8] Dramatiq message id            ARGV[9] the encoded message
-- ARGV[10] wake-up tokens kept at most
-- ARGV[11] number N of command field/value items
-- ARGV[12 .. 11+N] the command's field/value pairs, then the audit items
--          (lib/audit_append.lua names them)
--#include audit_append
local rate_key, vehicle_key, active_key = KEYS[1], KEYS[2], KEYS[3]
local command_key, commands_key, by_user_key, by_vehicle_key = KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local deadlines_key, queue_key, queue_messages_key, wake_key = KEYS[8], KEYS[9], KEYS[10], KEYS[11]
local audit_key, pending_key, by_type_key = KEYS[12], KEYS[13], KEYS[14]
local window_s, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
local command_id, kind, max_concurrent = ARGV[3], ARGV[4], tonumber(ARGV[5])
local score, deadline_score = ARGV[6], ARGV[7]
local message_id, message, wake_max = ARGV[8], ARGV[9], tonumber(ARGV[10])
local field_items = tonumber(ARGV[11])
local FIRST_FIELD = 12
local first_audit_field = FIRST_FIELD + field_items

if redis.call('EXISTS', command_key) == 1 then return {'admitted', ''} end

local hits = redis.call('INCR', rate_key)
if hits == 1 then redis.call('EXPIRE', rate_key, window_s) end
if hits > limit then return {'rate_limited', redis.call('TTL', rate_key)} end

local vehicle = redis.call('GET', vehicle_key)
if not vehicle then return {'vehicle_not_found'} end
if cjson.decode(vehicle)['connection_status'] ~= 'connected' then
  return {'offline', vehicle}
end

-- A destructive command runs alone, so a destructive entry is only ever the sole one:
-- the common path (room, nothing destructive) reads at most one entry.
local function earliest()
  local active = redis.call('HGETALL', active_key)
  local blocking, blocking_score = nil, nil
  for i = 1, #active, 2 do
    local entry_score = tonumber(string.match(active[i + 1], '^%a:(.*)$'))
    if blocking_score == nil or entry_score < blocking_score then
      blocking, blocking_score = active[i], entry_score
    end
  end
  return blocking
end
local running = redis.call('HLEN', active_key)
if running >= max_concurrent or (running > 0 and kind == 'd') then
  return {'busy', earliest(), vehicle}
end
if running == 1 then
  local only = redis.call('HGETALL', active_key)
  if string.sub(only[2], 1, 1) == 'd' then return {'busy', only[1], vehicle} end
end

redis.call('HSET', active_key, command_id, kind .. ':' .. score)
redis.call('HSET', command_key, 'submitted_ts', score,
  unpack(ARGV, FIRST_FIELD, first_audit_field - 1))
redis.call('ZADD', commands_key, score, command_id)
redis.call('ZADD', by_user_key, score, command_id)
redis.call('ZADD', by_vehicle_key, score, command_id)
redis.call('ZADD', pending_key, score, command_id)
redis.call('ZADD', by_type_key, score, command_id)
redis.call('ZADD', deadlines_key, deadline_score, command_id)
-- Stored, then queued (in the same step: a worker sees the message only after the command).
redis.call('HSET', queue_messages_key, message_id, message)
redis.call('RPUSH', queue_key, message_id)
redis.call('LPUSH', wake_key, '1')
redis.call('LTRIM', wake_key, 0, wake_max - 1)
audit_append(audit_key, {unpack(ARGV, first_audit_field)})
return {'admitted', vehicle}
