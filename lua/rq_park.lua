-- rq_park.lua: park a dequeued RQ job that must wait for units: status "deferred", the quota
-- marker set, out of the intermediate list, into the deferred registry. RQ keys only (RQ
-- itself does not run on Redis Cluster); the pool's own keys are never touched here.
-- KEYS[1] rq:job:<id>  KEYS[2] rq:queue:<q>:intermediate  KEYS[3] rq:deferred:<q>
-- ARGV[1] job id  ARGV[2] quota marker (JSON: pool, member, units, ttl, prefix, rid)
-- returns: 1 if parked, 0 if the job is gone or no longer queued (cancelled meanwhile)
redis.call('LREM', KEYS[2], 0, ARGV[1])
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'queued' and status ~= 'started' then return 0 end
local t = redis.call('TIME')
redis.call('HSET', KEYS[1], 'status', 'deferred', 'wshare_quota', ARGV[2])
redis.call('ZADD', KEYS[3], t[1] .. '.' .. string.format('%06d', tonumber(t[2])), ARGV[1])
return 1
