-- renew.lua: extend a live lease to now + ttl; the lease keeps its token.
-- KEYS[1]: the pool's key prefix "<prefix>:{pool}:" (lib.lua derives the key names)
-- ARGV[1] lease id  ARGV[2] ttl ms
-- returns: {"ok", new expiry ms, more} | {"lost", more} (released, revoked, expired or pool
--          deleted); more 1 if hand-off stopped at its batch limit (call tick)
return run(function()
  local id = ARGV[1]
  local now = now_ms()
  if not load_pool() then return {'lost', 0} end
  local exp = redis.call('ZSCORE', K_EXPIRY, id)
  local result = {'lost'}
  if exp and tonumber(exp) > now then  -- listed in :expiry if and only if in :leases
    exp = now + tonumber(ARGV[2])
    expire_at(id, exp)
    result = {'ok', I(exp)}
  end
  result[#result + 1] = housekeeping(now) and 1 or 0
  save_pool()
  return result
end)
