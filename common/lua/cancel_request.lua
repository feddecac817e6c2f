-- Flag a running command for cancellation. Returns 1 when flagged, 0 when not running.
--
-- KEYS[1] the command hash
-- ARGV[1] the status field, ARGV[2] the running status, ARGV[3] the cancel flag field
local command_key = KEYS[1]
local status_field, running, flag_field = ARGV[1], ARGV[2], ARGV[3]

if redis.call('HGET', command_key, status_field) ~= running then return 0 end
redis.call('HSET', command_key, flag_field, 'True')
return 1
