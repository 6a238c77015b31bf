-- Takes one job under a lease: first a job whose lease expired, else the next new entry,
-- after moving up to move_batch due delayed jobs back into the stream.
-- ARGV: prefix, group, consumer, now_ms, lease_ms, token, move_batch.
-- Returns {id, spec, attempt, max_attempts}, 'skip' for an entry without a job, or nil.
local group = ARGV[2]
local consumer = ARGV[3]
local now = tonumber(ARGV[4])
local lease = tonumber(ARGV[5])
local token = ARGV[6]
local move_batch = tonumber(ARGV[7])

local id
local expired = redis.call('ZRANGEBYSCORE', leases, '-inf', now, 'LIMIT', 0, 1)
if #expired > 0 then
  id = expired[1]
  local entry = redis.call('HGET', job_key(id), 'entry')
  redis.call('XCLAIM', stream, group, consumer, 0, entry)
else
  local due = redis.call('ZRANGEBYSCORE', delayed, '-inf', now, 'LIMIT', 0, move_batch)
  for _, due_id in ipairs(due) do
    redis.call('ZREM', delayed, due_id)
    enqueue(due_id)
    local instance = redis.call('HGET', job_key(due_id), 'instance')
    count(instance, 'delayed', -1)
    count(instance, 'ready', 1)
  end
  local read = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', 1, 'STREAMS', stream, '>')
  if not read or #read[1][2] == 0 then
    return nil
  end
  local entry = read[1][2][1]
  id = entry[2][2]
  if redis.call('EXISTS', job_key(id)) == 0 then
    redis.call('XACK', stream, group, entry[1])
    redis.call('XDEL', stream, entry[1])
    return 'skip'
  end
  local instance = redis.call('HGET', job_key(id), 'instance')
  count(instance, 'ready', -1)
  count(instance, 'leased', 1)
end

local key = job_key(id)
local attempt = redis.call('HINCRBY', key, 'attempt', 1)
redis.call('HSET', key, 'token', token, 'state', 'leased')
redis.call('ZADD', leases, now + lease, id)
local fields = redis.call('HMGET', key, 'spec', 'max_attempts')
return {id, fields[1], attempt, tonumber(fields[2])}
