-- Shared by every script. ARGV[1] is the key prefix; job hashes live at <prefix>:job:<id>.
-- Counters per instance (and for all instances) track how many jobs are in each state, so
-- that counting never scans the stream.
local prefix = ARGV[1]
local stream = prefix .. ':jobs'
local leases = prefix .. ':leases'
local delayed = prefix .. ':delayed'

local function job_key(id)
  return prefix .. ':job:' .. id
end

local function count(instance, state, delta)
  redis.call('HINCRBY', prefix .. ':stats:' .. instance, state, delta)
  redis.call('HINCRBY', prefix .. ':stats', state, delta)
end

-- Removes the job's stream entry and lease; returns the job's instance, or false if the
-- caller's token no longer holds the lease.
local function end_lease(group, id, token)
  local key = job_key(id)
  local fields = redis.call('HMGET', key, 'token', 'state', 'entry', 'instance')
  if fields[1] ~= token or fields[2] ~= 'leased' then
    return false
  end
  redis.call('XACK', stream, group, fields[3])
  redis.call('XDEL', stream, fields[3])
  redis.call('ZREM', leases, id)
  redis.call('HSET', key, 'token', '')
  count(fields[4], 'leased', -1)
  return fields[4]
end

local function enqueue(id)
  local entry = redis.call('XADD', stream, '*', 'job', id)
  redis.call('HSET', job_key(id), 'entry', entry, 'state', 'ready')
end
