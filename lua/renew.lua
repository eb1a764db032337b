-- renew.lua: extend a live lease to now + ttl; the lease keeps its token.
-- KEYS: the pool's keys, as listed in lib.lua
-- ARGV[1] lease id  ARGV[2] ttl ms
-- returns: {"ok", new expiry ms} | {"lost"} (released, revoked, expired or pool deleted)
return run(function()
  local id = ARGV[1]
  local now = now_ms()
  if not load_pool() then return {'lost'} end
  local exp = redis.call('ZSCORE', K_EXPIRY, id)
  local result = {'lost'}
  if exp and tonumber(exp) > now and redis.call('HEXISTS', K_LEASES, id) == 1 then
    exp = now + tonumber(ARGV[2])
    redis.call('ZADD', K_EXPIRY, I(exp), id)
    result = {'ok', I(exp)}
  end
  housekeeping(now)
  save_pool()
  return result
end)
