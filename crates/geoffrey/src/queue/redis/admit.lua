-- Records a delivery and enqueues its jobs, unless it is a duplicate.
-- ARGV: prefix, instance, now_ms, window_ms, retention_ms, event_id ('' for none),
-- content_key, max_attempts, count_retention_ms, then job id and spec pairs. Returns the job
-- count or -1.
local instance = ARGV[2]
local now = tonumber(ARGV[3])
local window = tonumber(ARGV[4])
local retention = tonumber(ARGV[5])
local event_id = ARGV[6]
local content_key = ARGV[7]
local max_attempts = ARGV[8]
local count_retention = tonumber(ARGV[9])
local seen = prefix .. ':seen:' .. instance
local id_key = seen .. ':id:' .. event_id
local body_key = seen .. ':body:' .. content_key
-- Keys outlive their window by a day of Redis time; the check itself uses the caller's clock.
local margin = 86400000

if event_id ~= '' then
  local at = redis.call('GET', id_key)
  if at and tonumber(at) >= now - retention then
    return -1
  end
end
local at = redis.call('GET', body_key)
if at and tonumber(at) >= now - window then
  return -1
end

if event_id ~= '' then
  redis.call('SET', id_key, now, 'PX', retention + margin)
end
redis.call('SET', body_key, now, 'PX', window + margin)

-- Hourly delivery counts, one hash per instance and UTC day, so that each key expires as a
-- whole once its day is older than the retention. The expiry is relative, like the keys
-- above, because Redis's time may differ from the caller's clock.
local hour_ms = 3600000
local day_ms = 24 * hour_ms
local day = math.floor(now / day_ms)
local counts = prefix .. ':deliveries:' .. instance .. ':' .. string.format('%d', day)
redis.call('HINCRBY', counts, string.format('%d', math.floor(now / hour_ms) * hour_ms), 1)
redis.call('PEXPIRE', counts, string.format('%d', (day + 1) * day_ms - now + count_retention + margin))

local jobs = 0
for i = 10, #ARGV, 2 do
  local id = ARGV[i]
  redis.call('HSET', job_key(id), 'spec', ARGV[i + 1], 'instance', instance, 'attempt', 0,
    'max_attempts', max_attempts)
  enqueue(id)
  jobs = jobs + 1
end
if jobs > 0 then
  count(instance, 'ready', jobs)
end
return jobs
