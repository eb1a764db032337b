-- rq_claim.lua: the worker about to run a job claims the lease a hand-off granted it
-- (wshare_granted = <rid> becomes claimed:<rid>), or, with ARGV[1] = "release", drops its
-- claim after the run (only its own: a later attempt's grant is left alone).
-- KEYS[1] rq:job:<id>
-- ARGV[1] "claim" or "release"  ARGV[2] request id (release only)
-- returns: the claimed request id, or "" (claim); 1 or 0 (release)
local granted = redis.call('HGET', KEYS[1], 'wshare_granted')
if ARGV[1] == 'claim' then
  if granted and string.sub(granted, 1, 8) ~= 'claimed:' then
    redis.call('HSET', KEYS[1], 'wshare_granted', 'claimed:' .. granted)
    return granted
  end
  return ''
end
if granted == 'claimed:' .. ARGV[2] then
  redis.call('HDEL', KEYS[1], 'wshare_granted')
  return 1
end
return 0
