-- lease.lua: one live lease, for a handle on it by id (adapters resume leases by id).
-- KEYS[1]: the pool's key prefix "<prefix>:{pool}:" (lib.lua derives the key names)
-- ARGV[1] lease id
-- returns: {"ok", lease record, expiry ms} | {"none"} (no such live lease)
return run(function()
  local now = now_ms()
  local exp = redis.call('ZSCORE', K_EXPIRY, ARGV[1])
  if not exp or tonumber(exp) <= now then return {'none'} end
  local record = redis.call('HGET', K_LEASES, ARGV[1])
  if not record then return {'none'} end
  return {'ok', record, exp}
end)
