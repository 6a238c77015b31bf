-- Replays or discards one failed job. Returns 1, or 0 if the instance has no such job.
-- ARGV: prefix, instance, id, action ('replay' or 'discard').
local instance = ARGV[2]
local id = ARGV[3]
local action = ARGV[4]

if redis.call('ZREM', prefix .. ':failed:' .. instance, id) == 0 then
  return 0
end
count(instance, 'failed', -1)
if action == 'replay' then
  redis.call('HSET', job_key(id), 'attempt', 0, 'reason', '', 'failed_at', '')
  enqueue(id)
  count(instance, 'ready', 1)
else
  redis.call('DEL', job_key(id))
end
return 1
