-- rq_unpark.lua: put a parked RQ job back on its queue, exactly once: only while it is still
-- "deferred" with our quota marker (a cancelled, deleted or already unparked job is left alone).
-- KEYS[1] rq:job:<id>  KEYS[2] rq:queue:<q>  KEYS[3] rq:deferred:<q>  KEYS[4] rq:queues
-- ARGV[1] job id
-- returns: 1 if the job was put back on its queue, else 0
if redis.call('HGET', KEYS[1], 'status') ~= 'deferred' or redis.call('HEXISTS', KEYS[1], 'wshare_quota') == 0 then
  return 0
end
redis.call('HSET', KEYS[1], 'status', 'queued')
redis.call('HDEL', KEYS[1], 'wshare_quota')
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('LPUSH', KEYS[2], ARGV[1])
redis.call('SADD', KEYS[4], KEYS[2])
return 1
