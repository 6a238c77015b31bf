-- Ends a lease: ack, retry, release or dead-letter. Returns 1, or 0 if the lease was lost.
-- ARGV: prefix, group, id, token, action, now_ms, run_at_ms, text.
local group = ARGV[2]
local id = ARGV[3]
local token = ARGV[4]
local action = ARGV[5]
local now = tonumber(ARGV[6])
local run_at = tonumber(ARGV[7])
local text = ARGV[8]

local instance = end_lease(group, id, token)
if not instance then
  return 0
end
local key = job_key(id)
if action == 'ack' then
  redis.call('DEL', key)
elseif action == 'retry' then
  redis.call('ZADD', delayed, run_at, id)
  redis.call('HSET', key, 'state', 'delayed', 'last_error', text)
  count(instance, 'delayed', 1)
elseif action == 'release' then
  redis.call('HINCRBY', key, 'attempt', -1)
  enqueue(id)
  count(instance, 'ready', 1)
elseif action == 'dead' then
  redis.call('ZADD', prefix .. ':failed:' .. instance, now, id)
  redis.call('HSET', key, 'state', 'failed', 'reason', text, 'failed_at', now)
  count(instance, 'failed', 1)
end
return 1
