-- rq_unpark.lua: put a parked RQ job back on its queue once its request was granted, exactly
-- once: only while it is still "deferred" with the marker of this very request. It records
-- the granted request in wshare_granted, so the worker that runs the job adopts its lease.
-- KEYS[1] rq:job:<id>  KEYS[2] rq:queue:<q>  KEYS[3] rq:deferred:<q>  KEYS[4] rq:queues
-- ARGV[1] job id  ARGV[2] request id (the lease id)
-- returns: 1 put back now; 2 already put back for this request (keep the lease); 0 the job
--          is gone, cancelled or waits for another request (give the units back)
local mark = redis.call('HGET', KEYS[1], 'wshare_quota')
if redis.call('HGET', KEYS[1], 'status') == 'deferred' and mark
    and string.find(mark, '"rid": "' .. ARGV[2] .. '"', 1, true) then
  redis.call('HSET', KEYS[1], 'status', 'queued', 'wshare_granted', ARGV[2])
  redis.call('HDEL', KEYS[1], 'wshare_quota')
  redis.call('ZREM', KEYS[3], ARGV[1])
  redis.call('LPUSH', KEYS[2], ARGV[1])
  redis.call('SADD', KEYS[4], KEYS[2])
  return 1
end
local granted = redis.call('HGET', KEYS[1], 'wshare_granted')
if granted == ARGV[2] or granted == 'claimed:' .. ARGV[2] then return 2 end
return 0
